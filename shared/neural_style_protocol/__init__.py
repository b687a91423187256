"""What the daemon and the GIMP plug-in share. Standard library (and pyzmq) only, Python 3.9+,
because the plug-in imports it inside GIMP's own Python.

Modules: `messages` (the message dataclasses), `params` (a job's parameters), `wire`
(serialize/deserialize signed frame lists), `replay`, `limits`, `errors`, `connection` (the
connection file). None of them imports pyzmq; only a transport module may.
"""

from __future__ import annotations

from .version import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
