"""The worker's pure helpers, in this process: wire parameters to the engine's, progress events,
the progress rate limit and the style cache. And the layer rule: the broker's side imports no
torch."""

from __future__ import annotations

import io
import multiprocessing
import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch
from daemon_support import content_image, style_png
from PIL import Image

from neural_style_daemon.engine import StyleParams, stylize
from neural_style_daemon.engine.memory import job_memory_bytes
from neural_style_daemon.engine.stylize import Progress
from neural_style_daemon.errors import InvalidInputError
from neural_style_daemon.server.events import JobDone, RunJob, WorkerConfig
from neural_style_daemon.server.job_params import to_style_params
from neural_style_daemon.server.worker import (
    JobRunner,
    RateLimit,
    StyleCache,
    fail_at_step,
    progress_event,
    retry_size,
)
from neural_style_protocol.params import JobParams


def test_default_job_params_are_the_engines_defaults() -> None:
    mapped, engine = to_style_params(JobParams()), StyleParams()
    for field in fields(StyleParams):
        assert getattr(mapped, field.name) == getattr(engine, field.name), field.name


def test_strength_is_a_percentage_on_the_wire_and_in_the_engine() -> None:
    assert to_style_params(JobParams(strength=1)).strength == 1.0
    assert to_style_params(JobParams(strength=100)).strength == 100.0


def test_style_weights_become_the_style_blend() -> None:
    params = to_style_params(JobParams(style_weights=(2.0, 1.0), optimizer="adam", seed=None))
    assert params.style_blend == (2.0, 1.0) and params.optimizer.value == "adam"
    assert params.seed is None


def test_a_tile_size_reaches_the_engine() -> None:
    assert to_style_params(JobParams(tile_size=256)).tile_size == 256
    assert to_style_params(JobParams()).tile_size is None


def test_progress_events_carry_finite_losses_and_an_rgb_preview() -> None:
    preview = np.zeros((6, 8, 3), np.uint8)
    progress = Progress(
        scale=1,
        scales=2,
        size=(64, 48),
        iteration=3,
        iterations=10,
        work_done=1.0000001,
        losses={"total": 1.5, "style": float("nan")},
        elapsed=2.0,
        peak_memory_bytes=10,
        preview=preview,
    )
    event = progress_event("job", progress)
    assert event.losses == {"total": 1.5} and event.work_done == 1.0
    assert (event.preview.width, event.preview.height, event.preview.channels) == (8, 6, 3)


def test_the_rate_limit_lets_forced_events_through() -> None:
    now = [0.0]
    limit = RateLimit(0.1, clock=lambda: now[0])
    assert limit.allow() and not limit.allow()
    assert limit.allow(force=True)
    now[0] += 0.1
    assert limit.allow()


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_style_cache_decodes_each_style_once_and_forgets_the_least_used() -> None:
    cache = StyleCache(max_items=2)
    first = cache.get(png(1), "style image 1")
    assert cache.get(png(1), "style image 1") is first and cache.hits == 1
    cache.get(png(2), "style image 2")
    cache.get(png(1), "style image 1")  # 1 is now the most recently used
    cache.get(png(3), "style image 3")  # so 2 goes
    hits = cache.hits
    cache.get(png(1), "style image 1")
    assert cache.hits == hits + 1
    cache.get(png(2), "style image 2")
    assert cache.hits == hits + 1  # decoded again
    with pytest.raises(InvalidInputError, match="style image 4"):
        cache.get(b"not an image", "style image 4")


BROKER_IMPORTS = """
import sys
from neural_style_daemon.cli import build_parser
build_parser(daemon_only=True)
import neural_style_daemon.server.lifecycle, neural_style_daemon.server.broker
import neural_style_daemon.server.scheduler, neural_style_daemon.server.supervisor
import neural_style_daemon.server.faults, neural_style_daemon.serve_options
import neural_style_protocol.client
print(" ".join(sorted(name for name in ("torch", "numpy", "PIL") if name in sys.modules)))
"""


def test_the_broker_side_imports_neither_torch_nor_numpy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BROKER_IMPORTS], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == []


def test_the_injected_out_of_memory_hits_the_kth_step_of_each_of_the_first_n_attempts() -> None:
    check = fail_at_step(lambda: False, step=3, times=2)
    outcomes = []
    for _ in range(10):
        try:
            outcomes.append(check())
        except torch.cuda.OutOfMemoryError:
            outcomes.append("oom")  # the next attempt counts its steps from here
    assert outcomes == [False, False, "oom", False, False, "oom"] + [False] * 4


def test_out_of_memory_retries_halve_the_pixels_down_to_the_floor() -> None:
    sizes, size = [], 2048
    while (size := retry_size(size, 256)) is not None:
        sizes.append(size)
    assert sizes == [1448, 1023, 723, 511, 361, 256]
    assert retry_size(200, 256) is None


def test_out_of_memory_retries_at_the_size_the_engine_reckoned_would_fit() -> None:
    assert retry_size(6000, 256, fitting=3882) == 3882
    assert retry_size(6000, 256, fitting=6000) == 4242  # none smaller given: half the pixels
    assert retry_size(6000, 256, fitting=100) == 256  # never under the floor


def test_a_cpu_job_too_large_for_the_free_memory_runs_at_the_largest_size_that_fits(
    engine, monkeypatch
) -> None:
    # The free memory of a small machine, as the kernel would report it: enough for the job
    # at 40 x 30 px with the short L-BFGS history, and a tenth to spare.
    free = int(job_memory_bytes(40 * 30, 5, engine.model.mixed_precision) / 0.9) + 1
    monkeypatch.setattr(stylize, "available_memory_bytes", lambda device: free)
    ours, theirs = multiprocessing.Pipe()
    runner = JobRunner(engine, theirs, WorkerConfig(oom_min_size=16))
    content, _ = content_image(64, 48)
    done = runner.run(RunJob("too-large", content, (style_png(),), JobParams(iterations=3)))
    assert isinstance(done, JobDone), done
    assert done.warnings == ("out of memory at 64 px: retried at 40 px",)
    assert (done.image.width, done.image.height) == (64, 48)  # the content's size
    assert done.steps == 3
    ours.close()
