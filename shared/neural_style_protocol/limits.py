"""What a message may hold at most. One frozen dataclass, so a daemon can lower (or raise) the
limits from its options and hand the same value to every check."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20

# Frames around the buffers: delimiter, signature, header, content.
ENVELOPE_FRAMES = 4


@dataclass(frozen=True)
class Limits:
    """Caps checked while deserializing, before any work is done on a message's content."""

    max_side: int = 8192  # width or height of any raw image, in pixels
    max_pixels: int = 8192 * 8192  # width * height of any raw image (64 megapixels)
    max_styles: int = 8  # style images in one job
    max_sequence: int = 100  # animation frames in one job, its content (the first) included
    max_iterations: int = 10_000  # per scale, as asked by a job's `iterations`
    max_frames: int = 128  # message frames after the routing ids, delimiter included
    max_json_bytes: int = 1 * MiB  # the header frame and the content frame, each
    max_frame_bytes: int = 8192 * 8192 * 4  # one buffer: an RGBA image at max_pixels
    max_total_bytes: int = 512 * MiB  # all frames of one message together

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, not {value!r}")
        # A submit needs the envelope, then the content and every style image, each style with
        # a region mask and a source mask, or (a sequence, which takes no masks) every frame
        # and every style image.
        needed = ENVELOPE_FRAMES + max(1 + 3 * self.max_styles, self.max_sequence + self.max_styles)
        if self.max_frames < needed:
            raise ValueError(
                f"Limits.max_frames must be at least {needed} for {self.max_styles} styles "
                f"and their masks or a sequence of {self.max_sequence}, not {self.max_frames}"
            )


DEFAULT_LIMITS = Limits()
