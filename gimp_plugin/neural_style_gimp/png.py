"""A minimal PNG writer, for a style taken from a GIMP layer: the daemon decodes style images
from files, and GIMP's Python has no imaging library."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def encode_png(pixels: bytes, width: int, height: int, channels: int = 4) -> bytes:
    """8-bit RGB (3 channels) or RGBA (4) pixels, rows top to bottom, as a PNG file."""
    if channels not in (3, 4):
        raise ValueError(f"channels must be 3 or 4, not {channels}")
    stride = width * channels
    if width < 1 or height < 1 or len(pixels) != stride * height:
        raise ValueError(f"{len(pixels)} bytes do not make a {width}x{height}x{channels} image")
    view = memoryview(pixels)
    # Filter type 0 (none) before each row; zlib's level 6 is the usual size/speed balance.
    raw = b"".join(
        b"\x00" + view[row * stride : (row + 1) * stride].tobytes() for row in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )
