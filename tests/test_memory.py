"""The CPU's memory check before a job (engine/memory.py): the estimate, the short L-BFGS history
where only that fits, and a refusal before any work, naming a size that would fit."""

from __future__ import annotations

import pytest
import torch
from memory_support import capped_below_whole

from neural_style_daemon.engine import StyleParams, stylize
from neural_style_daemon.engine import optimize as optimize_module
from neural_style_daemon.engine.devices import available_memory_bytes
from neural_style_daemon.engine.memory import (
    TILE_SIZES,
    fit_in_memory,
    fitting_long_side,
    gib,
    job_memory_bytes,
    largest_tile_pixels,
    smaller_tile_size,
)
from neural_style_daemon.engine.optimize import lbfgs_history
from neural_style_daemon.engine.pyramid import scaled_size
from neural_style_daemon.errors import DeviceMemoryError


def test_the_estimate_grows_with_the_pixels_the_history_and_fp32():
    one = job_memory_bytes(1000 * 1000, 20, mixed_precision=True)
    assert job_memory_bytes(2000 * 2000, 20, mixed_precision=True) == 4 * one
    assert job_memory_bytes(1000 * 1000, 5, mixed_precision=True) < one
    assert job_memory_bytes(1000 * 1000, 20, mixed_precision=False) > one
    # Twenty pairs of fp32 3-channel image vectors: 480 bytes a pixel of the whole.
    assert one - job_memory_bytes(1000 * 1000, 0, mixed_precision=True) == 480 * 1000 * 1000


def test_a_job_that_fits_keeps_its_parameters_and_says_nothing():
    params, warnings = StyleParams(), []
    needed = job_memory_bytes(640 * 480, 20, mixed_precision=True)
    assert fit_in_memory((640, 480), params, True, needed, warnings.append) is params
    assert warnings == []


def test_a_job_that_fits_only_with_the_short_history_gets_it_and_a_warning():
    warnings = []
    available = job_memory_bytes(2048 * 1536, 5, mixed_precision=True)
    fitted = fit_in_memory((2048, 1536), StyleParams(), True, available, warnings.append)
    assert fitted.lbfgs_history == 5
    assert warnings == [
        f"not enough memory at 2048 px for a 20-step L-BFGS history (about "
        f"{gib(job_memory_bytes(2048 * 1536, 20, True))} needed, {gib(available)} available): "
        f"running with 5 steps"
    ]


@pytest.mark.parametrize("params", [StyleParams(), StyleParams(optimizer="adam")])
def test_a_job_that_cannot_fit_even_in_tiles_is_refused_with_a_size_that_would(params):
    size, available = (8192, 8192), 2 * 2**30
    with pytest.raises(DeviceMemoryError) as refused:
        fit_in_memory(size, params, True, available, pytest.fail)
    # The short history, or fewer where the history's own cap allows fewer at this size.
    image = torch.empty(1, 3, 8192, 8192, device="meta")
    pairs = lbfgs_history(image, 5) if params.optimizer.value == "lbfgs" else 1
    box = largest_tile_pixels(size, TILE_SIZES[-1])  # the smallest tiles tried
    side = refused.value.fitting_side
    assert side == fitting_long_side(size, pairs, True, available, box)
    assert str(refused.value) == (
        f"not enough memory at 8192 px: a 8192x8192 px job needs about "
        f"{gib(job_memory_bytes(8192 * 8192, pairs, True, box))} and 2.0 GiB are available: a size "
        f"of {side} px or less would fit"
    )

    def needed(long_side: int) -> int:
        width, height = scaled_size(*size, long_side)
        return job_memory_bytes(width * height, pairs, True, box)

    # The largest that fits in nine tenths of the free memory: what is free moves.
    assert needed(side) <= 0.9 * available < needed(side + 2)


def test_a_job_too_large_whole_runs_in_the_largest_tiles_that_fit():
    size, pixels = (6000, 4000), 6000 * 4000
    full = lbfgs_history(torch.empty(1, 3, 4000, 6000, device="meta"), 20)

    def needs(pairs: int, tile_size: int) -> int:
        return job_memory_bytes(pixels, pairs, False, largest_tile_pixels(size, tile_size))

    for available, pairs in ((28 * 2**30, full), (15 * 2**30, 5)):
        warnings: list[str] = []
        fitted = fit_in_memory(size, StyleParams(), False, available, warnings.append)
        assert job_memory_bytes(pixels, 5, False) > available  # whole, it cannot fit
        assert fitted.lbfgs_history == pairs
        # The largest tiles that fit, with either history: the next larger ones fit with
        # neither; in them, the full history where it fits.
        assert needs(pairs, fitted.tile_size) <= available
        assert (pairs == full) == (needs(full, fitted.tile_size) <= available)
        larger = [t for t in TILE_SIZES if t > fitted.tile_size]
        assert not larger or needs(5, min(larger)) > available
        assert len(warnings) == 1
        assert f"evaluating it in {fitted.tile_size} px tiles" in warnings[0]
        assert ("5-step L-BFGS history" in warnings[0]) == (pairs == 5)
    # A job that fits whole is left whole, and one given tiles keeps tiles no larger.
    assert (
        fit_in_memory((640, 480), StyleParams(), False, 28 * 2**30, pytest.fail).tile_size is None
    )
    given = StyleParams(tile_size=300)
    assert fit_in_memory(size, given, False, 28 * 2**30, pytest.fail) is given
    fitted = fit_in_memory(size, given, False, 15 * 2**30, lambda _: None)
    assert fitted.tile_size <= 300


def test_the_largest_tile_bounds_the_evaluations_share():
    size = (6000, 4000)
    box = largest_tile_pixels(size, 1024)
    # The largest tile, with its halo on both sides.
    assert box is not None and box <= (1024 + 2 * 80) ** 2
    assert largest_tile_pixels((800, 600), 1024) is None
    # Smaller tiles need less; the whole image's share stays.
    smaller = largest_tile_pixels(size, 512)
    assert (
        job_memory_bytes(24_000_000, 20, False, smaller)
        < (job_memory_bytes(24_000_000, 20, False, box))
        < job_memory_bytes(24_000_000, 20, False)
    )


def test_the_available_memory_is_the_kernels_figure_on_a_linux_cpu_and_unknown_on_mps():
    available = available_memory_bytes(torch.device("cpu"))
    with open("/proc/meminfo") as meminfo:
        total = next(
            int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:")
        )
    assert available is not None and 0 < available <= total
    assert available_memory_bytes(torch.device("mps")) is None


def test_the_engine_refuses_a_job_too_large_for_the_free_memory_before_any_step(
    engine, make_content, make_style, params, progress_log, monkeypatch
):
    # The machine's free memory, as the kernel would report it on a small machine.
    monkeypatch.setattr(stylize, "available_memory_bytes", lambda device: 2**20)
    with pytest.raises(DeviceMemoryError, match="a 64x48 px job needs about"):
        engine.stylize(
            make_content(64, 48), [make_style(32, 32)], params(), on_progress=progress_log
        )
    assert progress_log.reports == []


def test_the_engine_runs_a_job_that_fits_only_with_the_short_history_with_it(
    engine, make_content, make_style, params, lbfgs_histories, monkeypatch
):
    free = job_memory_bytes(64 * 48, 5, engine.model.mixed_precision)
    monkeypatch.setattr(stylize, "available_memory_bytes", lambda device: free)
    warnings = []
    result = engine.stylize(
        make_content(64, 48), [make_style(32, 32)], params(), on_warning=warnings.append
    )
    assert result.steps == 3 and lbfgs_histories == [5]
    assert len(warnings) == 1 and "running with 5 steps" in warnings[0]


def test_out_of_memory_in_tiles_tries_the_next_smaller_tiles_and_never_below_the_smallest():
    assert smaller_tile_size((6000, 4000), None) == TILE_SIZES[0]
    assert smaller_tile_size((6000, 4000), TILE_SIZES[0]) == TILE_SIZES[1]
    assert smaller_tile_size((1500, 1000), None) == 1024  # tiles smaller than the image
    assert smaller_tile_size((6000, 4000), 300) == 256
    assert smaller_tile_size((6000, 4000), TILE_SIZES[-1]) is None
    assert smaller_tile_size((200, 150), None) is None  # smaller than any tile


# A job's own cap at this size is also run by the largest-scale test below; the job variant
# here is for the full run.
@pytest.mark.parametrize("cap", [pytest.param("job", marks=pytest.mark.slow), "engine"])
def test_a_job_capped_below_what_it_needs_whole_runs_in_tiles_at_its_size(
    engine, make_content, make_style, params, lbfgs_histories, monkeypatch, cap
):
    size = (480, 360)
    limit = capped_below_whole(size, engine.model.mixed_precision)
    job = params(iterations=2)
    if cap == "job":
        job = params(iterations=2, max_memory=limit / 2**30)
    else:
        monkeypatch.setattr(engine, "max_memory_bytes", limit)
    evaluations: list[int] = []
    monkeypatch.setattr(
        optimize_module,
        "TiledEvaluation",
        recording_tiled_evaluations(optimize_module.TiledEvaluation, evaluations),
    )
    warnings: list[str] = []
    result = engine.stylize(
        make_content(*size), [make_style(64, 64)], job, on_warning=warnings.append
    )
    assert result.sizes == [size] and result.image.shape == (360, 480, 3)  # not shrunk
    assert result.steps == 2 and lbfgs_histories == [20]
    assert evaluations == [4]  # one scale, in 2 x 2 tiles
    assert len(warnings) == 1 and "evaluating it in 256 px tiles" in warnings[0]


def recording_tiled_evaluations(real, counts: list[int]):
    """TiledEvaluation, recording the tile count of each one made."""

    def make(*args, **kwargs):
        evaluation = real(*args, **kwargs)
        counts.append(len(evaluation.tiles))
        return evaluation

    return make


def test_a_job_capped_below_even_the_smallest_tiles_is_refused_before_any_step(
    engine, make_content, make_style, params, progress_log
):
    with pytest.raises(DeviceMemoryError, match="not enough memory at 320 px"):
        engine.stylize(
            make_content(320, 240),
            [make_style(64, 64)],
            params(max_memory=0.05),
            on_progress=progress_log,
        )
    assert progress_log.reports == []


def test_out_of_memory_with_no_history_left_to_shorten_runs_the_scale_again_in_tiles(
    engine, make_content, make_style, params, progress_log, monkeypatch
):
    evaluations: list[int] = []
    monkeypatch.setattr(
        optimize_module,
        "TiledEvaluation",
        recording_tiled_evaluations(optimize_module.TiledEvaluation, evaluations),
    )
    checks = iter(range(1, 100))

    def out_of_memory_at_the_first_check() -> bool:
        if next(checks) == 1:
            raise torch.cuda.OutOfMemoryError("out of memory (raised by the test)")
        return False

    warnings: list[str] = []
    result = engine.stylize(
        make_content(320, 240),
        [make_style(64, 64)],
        params(iterations=2, lbfgs_history=5),
        on_progress=progress_log,
        should_cancel=out_of_memory_at_the_first_check,
        on_warning=warnings.append,
    )
    assert warnings == ["out of memory at 320 px: retried evaluating it in 256 px tiles"]
    assert evaluations == [2] and result.steps == 2
    assert result.image.shape == (240, 320, 3)


def test_a_job_tiled_for_its_largest_scale_runs_the_smaller_scales_whole(
    engine, make_content, make_style, params, monkeypatch
):
    size = (480, 360)
    limit = capped_below_whole(size, engine.model.mixed_precision)
    evaluations: list[int] = []
    monkeypatch.setattr(
        optimize_module,
        "TiledEvaluation",
        recording_tiled_evaluations(optimize_module.TiledEvaluation, evaluations),
    )
    result = engine.stylize(
        make_content(*size),
        [make_style(64, 64)],
        params(iterations=1, min_size=240, max_memory=limit / 2**30),
    )
    assert len(result.sizes) > 1 and result.sizes[-1] == size
    assert evaluations == [4]  # the largest scale alone, in 2 x 2 tiles
