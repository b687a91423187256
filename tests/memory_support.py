"""Memory caps for tests of tiled jobs, from the engine's own estimates (engine/memory.py)."""

from __future__ import annotations

from neural_style_daemon.engine.memory import job_memory_bytes, largest_tile_pixels

# The tiles a job capped by `capped_below_whole` runs in.
CAPPED_TILE_SIZE = 256


def needs_in_tiles(size: tuple[int, int], pairs: int, mixed_precision: bool, tile: int) -> int:
    width, height = size
    return job_memory_bytes(width * height, pairs, mixed_precision, largest_tile_pixels(size, tile))


def capped_below_whole(size: tuple[int, int], mixed_precision: bool) -> int:
    """A cap in bytes under which a job of `size` (width, height) fits in 256 px tiles with
    its full 20-step history, and neither whole (even with the short history) nor in 512 px
    tiles."""
    limit = needs_in_tiles(size, 20, mixed_precision, CAPPED_TILE_SIZE) + 2**20
    assert job_memory_bytes(size[0] * size[1], 5, mixed_precision) > limit
    assert needs_in_tiles(size, 20, mixed_precision, 512) > limit
    return limit


def capped_to_tiles(size: tuple[int, int], mixed_precision: bool) -> int:
    """A cap in bytes under which a job of `size` fits only in 256 px tiles (with the short
    history, where the full one does not fit in them): smaller jobs than capped_below_whole
    needs, for tests where every step counts."""
    limit = needs_in_tiles(size, 5, mixed_precision, CAPPED_TILE_SIZE) + 2**20
    assert job_memory_bytes(size[0] * size[1], 5, mixed_precision) > limit
    return limit
