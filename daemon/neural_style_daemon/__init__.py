"""Neural style transfer for GIMP: the engine, the command line and the daemon."""

from __future__ import annotations

__version__ = "0.1.0"
