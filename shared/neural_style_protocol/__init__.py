"""What the daemon and the GIMP plug-in share. Standard library (and pyzmq) only, Python 3.9+,
because the plug-in imports it inside GIMP's own Python."""

from __future__ import annotations

PROTOCOL_VERSION = 1
