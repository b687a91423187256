"""The coarse-to-fine ladder of processing sizes."""

from __future__ import annotations

import math

from ..errors import InvalidInputError
from .params import MAX_SIZE, MIN_SIDE, StyleParams


def scaled_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the long side set to `long_side`, the aspect ratio kept."""
    factor = long_side / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def processing_long_side(width: int, height: int, size: int | None) -> int:
    """The long side a `width` x `height` content is processed at: `size`, or the content's
    own long side, and never over MAX_SIZE."""
    return min(size or max(width, height), MAX_SIZE)


def pyramid_sizes(width: int, height: int, long_side: int, min_size: int) -> list[tuple[int, int]]:
    """Sizes from about `min_size` up to `long_side`, each sqrt(2) larger than the one before.

    Scales on which the short side would drop under what VGG can see are left out, so a very
    wide image starts at a finer scale instead of a sliver.
    """
    steps = max(0, math.floor(math.log(long_side / min_size, math.sqrt(2)) + 1e-9))
    sides = [round(long_side / math.sqrt(2) ** k) for k in range(steps, 0, -1)] + [long_side]
    sizes = [scaled_size(width, height, side) for side in sides]
    return [size for size in sizes if min(size) >= MIN_SIDE] or [sizes[-1]]


def plan_scales(
    width: int, height: int, params: StyleParams, *, warm_start: bool = False
) -> tuple[list[tuple[int, int]], list[int], float]:
    """A job's schedule for a `width` x `height` content: the scales' sizes, iterations per
    scale (`iterations` sets every scale; `initial_iterations`, else the preset, the first) and
    the plateau tolerance. With `warm_start` (a frame of a sequence that starts from the frame
    before, warped: frames.py), the finest scale alone with a finer scale's iterations: the start
    already has the style's large structure that the coarse scales are there to find."""
    preset = params.preset_values
    long_side = processing_long_side(width, height, params.size)
    sizes = pyramid_sizes(width, height, long_side, params.min_size or preset.min_size)
    if min(sizes[-1]) < MIN_SIDE:  # VGG's poolings would shrink it to nothing
        needed = math.ceil(MIN_SIDE * max(width, height) / min(width, height))
        raise InvalidInputError(
            f"size {long_side} would shrink the {width}x{height} content image to "
            f"{sizes[-1][0]}x{sizes[-1][1]}, under the minimum side of {MIN_SIDE} "
            f"pixels: use a size of at least {needed}"
        )
    rest = params.iterations if params.iterations is not None else preset.iterations
    first = next(
        n
        for n in (params.initial_iterations, params.iterations, preset.initial_iterations)
        if n is not None
    )
    tolerance = preset.tolerance if params.tolerance is None else params.tolerance
    if warm_start:
        return sizes[-1:], [rest], tolerance
    return sizes, [first] + [rest] * (len(sizes) - 1), tolerance
