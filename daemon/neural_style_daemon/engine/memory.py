"""What a job needs in memory on the CPU, checked against what is free before it starts.

On CUDA the allocator refuses an allocation it cannot serve (an out-of-memory error the
daemon answers with retries). On a Linux CPU memory is overcommitted: the job's allocations
all succeed, and the kernel's out-of-memory killer ends the process when the pages are
touched, minutes into the job. So on the CPU the engine compares an estimate of the job's
peak with the memory the kernel says is available, and refuses a job that cannot fit with the
error the engine gives for running out (DeviceMemoryError), before any work is done.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from ..errors import DeviceMemoryError
from .optimize import lbfgs_history, shorter_lbfgs_history
from .params import MIN_SIDE, Optimizer, StyleParams
from .tiles import plan_tiles

# Peak bytes per processed pixel of a job's largest scale beyond what the engine holds at rest,
# with no L-BFGS history, on the CPU (bf16 under autocast, or fp32): the evaluation's
# activations and gradients, the content target, the image's copies, and the heap that
# malloc keeps for reuse (devices.reuse_freed_cpu_memory): the largest measured on whole jobs
# (docs/benchmarks.md, "Memory"), with 5 % to spare.
BYTES_PER_PIXEL = {torch.bfloat16: 2200, torch.float32: 3120}
# What a tiled job holds per pixel of the whole image besides its pairs (the image and its
# copies, its gradient, the content target, malloc's kept heap), the evaluation's own share
# being bounded by the largest tile instead: the measured share (docs/benchmarks.md, "Full
# resolution") with an eighth to spare.
TILED_BYTES_PER_PIXEL = 330
# Each L-BFGS pair holds two fp32 image vectors (s and y) on the CPU; Adam's two moments
# are as large as one pair.
PAIR_BYTES_PER_PIXEL = 2 * 3 * 4
# The size offered as one that would fit leaves this share of the free memory to spare: what
# is free moves (the next attempt's own copies of the images, other programs), and a daemon's
# retry at the size that exactly fitted was refused again (docs/benchmarks.md, "Memory").
FITTING_SHARE = 0.9


# Tile sizes a job that does not fit whole is tried with, largest first: below 256 px the halo
# would more than triple the pixels evaluated. Larger tiles than 1024 px would save little
# (their halos cost 1.2 instead of 1.3 times the pixels) for three times the memory.
TILE_SIZES = (1024, 512, 256)


def fit_in_memory(
    size: tuple[int, int],
    params: StyleParams,
    mixed_precision: bool,
    available: int,
    warn: Callable[[str], None],
) -> StyleParams:
    """`params` for a job whose largest scale is `size` (width, height) that fit in `available`
    bytes, with a warning for each change: the short L-BFGS history where only that fits,
    else the largest tiles that fit (with the full history if it fits in them). DeviceMemoryError
    where nothing does, naming a size that would."""
    width, height = size
    pairs = _pairs(size, params.lbfgs_history, params)
    shorter = shorter_lbfgs_history(params)
    short_pairs = pairs if shorter is None else min(pairs, _pairs(size, shorter, params))

    def needs(pair_count: int, tile_size: int | None) -> int:
        box = largest_tile_pixels(size, tile_size)
        return job_memory_bytes(width * height, pair_count, mixed_precision, box)

    needed = needs(pairs, params.tile_size)
    if needed <= available:
        return params
    if short_pairs < pairs and needs(short_pairs, params.tile_size) <= available:
        warn(
            f"not enough memory at {max(size)} px for a {pairs}-step L-BFGS history "
            f"(about {gib(needed)} needed, {gib(available)} available): running with "
            f"{short_pairs} steps"
        )
        return replace(params, lbfgs_history=short_pairs)
    tiles = [t for t in TILE_SIZES if t < max(size) and t < (params.tile_size or math.inf)]
    # Smaller tiles cost more time than a shorter history costs convergence (docs/benchmarks.md,
    # "Tiled evaluation").
    for tile_size in tiles:
        for pair_count in dict.fromkeys((pairs, short_pairs)):
            if needs(pair_count, tile_size) <= available:
                history = "" if pair_count == pairs else f" and a {pair_count}-step L-BFGS history"
                warn(
                    f"not enough memory at {max(size)} px to evaluate the image whole "
                    f"(about {gib(needed)} needed, {gib(available)} available): evaluating it in "
                    f"{tile_size} px tiles{history}, which takes longer"
                )
                return replace(params, tile_size=tile_size, lbfgs_history=pair_count)
    smallest = tiles[-1] if tiles else params.tile_size
    needed = needs(short_pairs, smallest)
    fits = fitting_long_side(
        size, short_pairs, mixed_precision, available, largest_tile_pixels(size, smallest)
    )
    advice = "close other programs that use memory"
    if fits >= MIN_SIDE:
        advice = f"a size of {fits} px or less would fit"
    raise DeviceMemoryError(
        f"not enough memory at {max(size)} px: a {width}x{height} px job needs about "
        f"{gib(needed)} and {gib(available)} are available: {advice}",
        fits,
    )


def _pairs(size: tuple[int, int], history: int, params: StyleParams) -> int:
    """The optimiser's image-sized pairs at a scale of `size` with `history` asked for."""
    if params.optimizer is not Optimizer.LBFGS:
        return 1
    width, height = size
    image = torch.empty(1, 3, height, width, device="meta")  # a shape, for the optimiser's cap
    return lbfgs_history(image, history)


def fits_whole(
    size: tuple[int, int], params: StyleParams, mixed_precision: bool, available: int
) -> bool:
    """Whether a scale of `size` (width, height) fits in `available` bytes evaluated whole:
    a job tiled for its largest scale need not tile the smaller ones."""
    pairs = _pairs(size, params.lbfgs_history, params)
    return job_memory_bytes(size[0] * size[1], pairs, mixed_precision) <= available


def smaller_tile_size(size: tuple[int, int], tile_size: int | None) -> int | None:
    """The next of TILE_SIZES to evaluate a scale of `size` in after running out of memory
    in tiles of `tile_size` (None: whole); None when there is no smaller one."""
    current = min(tile_size or math.inf, max(size))
    return next((t for t in TILE_SIZES if t < current), None)


def largest_tile_pixels(size: tuple[int, int], tile_size: int | None) -> int | None:
    """The pixels of the largest tile, halo included, that the largest scale is evaluated
    in; None when it is not tiled."""
    width, height = size
    if tile_size is None or max(size) <= tile_size:
        return None
    return max(t.box_pixels for t in plan_tiles(height, width, tile_size))


def job_memory_bytes(
    pixels: int, pairs: int, mixed_precision: bool, tile_pixels: int | None = None
) -> int:
    """The estimated peak of a job whose largest scale has `pixels`, with `pairs` L-BFGS
    pairs (1 for Adam), above the engine at rest; evaluated in tiles of at most `tile_pixels`
    if given."""
    dtype = torch.bfloat16 if mixed_precision else torch.float32
    if tile_pixels is not None and tile_pixels < pixels:
        whole = pixels * (TILED_BYTES_PER_PIXEL + pairs * PAIR_BYTES_PER_PIXEL)
        return whole + tile_pixels * BYTES_PER_PIXEL[dtype]
    return pixels * (BYTES_PER_PIXEL[dtype] + pairs * PAIR_BYTES_PER_PIXEL)


def fitting_long_side(
    size: tuple[int, int],
    pairs: int,
    mixed_precision: bool,
    available: int,
    tile_pixels: int | None = None,
) -> int:
    """The largest long side, at the aspect ratio of `size` (width, height), whose job fits in
    FITTING_SHARE of `available` bytes (in tiles of at most `tile_pixels`, if given)."""
    width, height = size
    budget = FITTING_SHARE * available
    per_pixel = job_memory_bytes(1, pairs, mixed_precision)
    if tile_pixels is not None:
        dtype = torch.bfloat16 if mixed_precision else torch.float32
        budget -= tile_pixels * BYTES_PER_PIXEL[dtype]
        per_pixel = TILED_BYTES_PER_PIXEL + pairs * PAIR_BYTES_PER_PIXEL
    pixels = max(budget, 0) / per_pixel
    return math.floor(max(width, height) * math.sqrt(pixels / (width * height)))


def gib(count: int) -> str:
    """Bytes for people: GiB with one decimal, MiB under one GiB."""
    if count < 2**30:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**30:.1f} GiB"
