"""The coarse-to-fine ladder of processing sizes."""

from __future__ import annotations

import math

from .params import MIN_SIDE


def scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side set to `long_side`, the aspect ratio kept."""
    factor = long_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def pyramid_sizes(width: int, height: int, long_side: int, min_size: int) -> list[tuple[int, int]]:
    """Sizes from about `min_size` up to `long_side`, each sqrt(2) larger than the one before.

    Scales on which the short side would drop under what VGG can see are left out, so a very
    wide image starts at a finer scale instead of a sliver.
    """
    steps = max(0, math.floor(math.log(long_side / min_size, math.sqrt(2)) + 1e-9))
    sides = [round(long_side / math.sqrt(2) ** k) for k in range(steps, 0, -1)] + [long_side]
    sizes = [scaled_size(width, height, side) for side in sides]
    return [size for size in sizes if min(size) >= MIN_SIDE] or [sizes[-1]]
