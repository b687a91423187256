"""The protocol version, in every message header and in the connection file. Raise it on any
change that an older peer would misread."""

from __future__ import annotations

PROTOCOL_VERSION = 1
