"""What the daemon and the GIMP plug-in share. Standard library (and pyzmq) only, Python 3.9+,
because the plug-in imports it inside GIMP's own Python.

Modules: `messages` (the message dataclasses), `params` (a job's parameters), `wire`
(serialize/deserialize signed frame lists), `replay`, `limits`, `errors`, `connection` (the
connection file), `stream` (a job's events). None of them imports pyzmq; only `transport`
(socket set-up) and `client` (`DaemonClient`, used by the command line and the plug-in) do.
"""

from __future__ import annotations

from .version import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
