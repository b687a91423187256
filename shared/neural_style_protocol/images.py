"""Raw pixels as they travel: one contiguous block of uint8, described by width, height and a
channel count that the schema (not the wire) fixes: 4 for content and results, 3 for previews,
1 for region masks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ._fields import BIG_INT, check_int
from .errors import ErrorCode, ProtocolError

# Pixels may be handed over without a copy (a memoryview of a C-contiguous array).
BytesLike = Union[bytes, bytearray, memoryview]
CHANNEL_COUNTS = (1, 3, 4)  # grey (a mask), RGB, RGBA


@dataclass(frozen=True)
class RawImage:
    """Pixels as uint8, rows top to bottom, channels interleaved (grey, RGB or RGBA)."""

    data: BytesLike = field(repr=False)  # megabytes: keep them out of logs
    width: int
    height: int
    channels: int = 4

    def __post_init__(self) -> None:
        code = ErrorCode.INVALID_IMAGE
        check_int(self.channels, "image channels", 1, 4, code)
        if self.channels not in CHANNEL_COUNTS:
            raise ProtocolError(code, f"image channels must be 1, 3 or 4, not {self.channels}")
        check_int(self.width, "image width", 1, BIG_INT, code)
        check_int(self.height, "image height", 1, BIG_INT, code)
        data = self.data
        if isinstance(data, memoryview):
            if not data.c_contiguous:
                # Sending needs one contiguous block; a strided view would need a copy.
                raise ProtocolError(code, "image data is not C-contiguous")
            object.__setattr__(self, "data", data.cast("B"))
        elif not isinstance(data, (bytes, bytearray)):
            raise ProtocolError(code, f"image data must be bytes, not {type(data).__name__}")
        expected = self.width * self.height * self.channels
        if self.nbytes != expected:
            raise ProtocolError(
                code,
                f"{self.nbytes} bytes of pixels for {self.width}x"
                f"{self.height}x{self.channels} ({expected} expected)",
            )

    @property
    def nbytes(self) -> int:
        data = self.data
        return data.nbytes if isinstance(data, memoryview) else len(data)
