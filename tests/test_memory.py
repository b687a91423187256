"""The CPU's memory check before a job (engine/memory.py): the estimate, the short L-BFGS history
where only that fits, and a refusal before any work, naming a size that would fit."""

from __future__ import annotations

import pytest
import torch

from neural_style_daemon.engine import StyleParams, stylize
from neural_style_daemon.engine.devices import available_memory_bytes
from neural_style_daemon.engine.memory import (
    fit_in_memory,
    fitting_long_side,
    gib,
    job_memory_bytes,
    largest_tile_pixels,
)
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
        f"not enough free memory at 2048 px for a 20-step L-BFGS history (about "
        f"{gib(job_memory_bytes(2048 * 1536, 20, True))} needed, {gib(available)} free): "
        f"running with 5 steps"
    ]


@pytest.mark.parametrize("params", [StyleParams(), StyleParams(optimizer="adam")])
def test_a_job_that_cannot_fit_is_refused_with_a_size_that_would(params):
    size, available = (4096, 3072), 6 * 2**30
    with pytest.raises(DeviceMemoryError) as refused:
        fit_in_memory(size, params, True, available, pytest.fail)
    pairs = 5 if params.optimizer.value == "lbfgs" else 1
    side = refused.value.fitting_side
    assert side == fitting_long_side(size, pairs, True, available)
    assert str(refused.value) == (
        f"not enough memory at 4096 px: a 4096x3072 px job needs about "
        f"{gib(job_memory_bytes(4096 * 3072, pairs, True))} and 6.0 GiB are free: a size of "
        f"{side} px or less would fit"
    )

    def needed(long_side: int) -> int:
        width, height = scaled_size(*size, long_side)
        return job_memory_bytes(width * height, pairs, True)

    # The largest that fits in nine tenths of the free memory: what is free moves.
    assert needed(side) <= 0.9 * available < needed(side + 2)


def test_tiles_let_a_job_fit_that_would_not_untiled():
    size, available = (6000, 4000), 28 * 2**30
    with pytest.raises(DeviceMemoryError):
        fit_in_memory(size, StyleParams(), False, available, pytest.fail)
    tiled = StyleParams(tile_size=1024)
    assert fit_in_memory(size, tiled, False, available, pytest.fail) is tiled
    box = largest_tile_pixels(size, 1024)
    # The largest tile, with its halo on both sides: the evaluation's share is bounded by it.
    assert box is not None and box <= (1024 + 2 * 80) ** 2
    assert largest_tile_pixels((800, 600), 1024) is None
    # Smaller tiles need less; the whole image's share stays.
    assert job_memory_bytes(24_000_000, 20, False, largest_tile_pixels(size, 512)) < (
        job_memory_bytes(24_000_000, 20, False, box)
    )
    # Refused even in tiles, the size offered fits in tiles.
    with pytest.raises(DeviceMemoryError) as refused:
        fit_in_memory(size, tiled, False, 8 * 2**30, pytest.fail)
    side = refused.value.fitting_side
    width, height = scaled_size(*size, side)
    needed = job_memory_bytes(width * height, 5, False, largest_tile_pixels((width, height), 1024))
    assert side > 2000 and needed <= 0.9 * 8 * 2**30


def test_the_available_memory_is_the_kernels_figure_on_a_linux_cpu_and_unknown_elsewhere():
    available = available_memory_bytes(torch.device("cpu"))
    with open("/proc/meminfo") as meminfo:
        total = next(
            int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemTotal:")
        )
    assert available is not None and 0 < available <= total
    assert available_memory_bytes(torch.device("cuda")) is None


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
