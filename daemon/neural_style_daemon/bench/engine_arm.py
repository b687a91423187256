"""Running the engine under the benchmark's clock: its image is snapshotted during the run and
scored by the reference loss, and the time spent on that is taken out of the engine's time.

The engine hands its callback losses, not images; the snapshots come from its previews
(`preview_every=1`, `preview_size` = the output's long side), which are the current image as
8-bit RGB: the same rounding the naive's final image gets before it is scored. Making a preview
costs the engine a copy and a rounding per step; that cost is measured beforehand on an image of
the same size and subtracted too (it is small beside a VGG forward and backward pass).

On CUDA the engine reports (and snapshots) only at its reads of the loss, every few steps
(`StyleEngine.reads_every`), as it does for users: step counts come from the reports'
iteration numbers, and per-step times are the time between reports over the steps between them.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np
import torch

from ..engine import StyleParams
from ..engine.params import MAX_SIZE
from ..engine.stylize import Progress, StyleEngine, resize, to_array
from .reference import ReferenceLoss

log = logging.getLogger(__name__)

# StyleParams refuses larger previews; above this size snapshots are enlarged before scoring.
MAX_PREVIEW = 1024


@dataclass(frozen=True)
class Snapshot:
    """An arm's image scored on the way (the naive's too: one scale, step = iteration)."""

    step: int  # steps done, all scales together
    scale: int
    seconds: float  # the arm's time to this step, benchmark overhead excluded
    loss: float  # reference loss of the image after this step


@dataclass(frozen=True)
class EngineRun:
    seconds: float  # engine time to its last step
    steps: int
    snapshots: tuple[Snapshot, ...]
    reached: Snapshot | None  # the first snapshot at or under the target loss
    output_step_seconds: tuple[float, ...]  # step times at the output size (first excluded)


@dataclass
class _Recorder:
    """The engine's on_progress and should_cancel: clocks each step, scores snapshots."""

    reference: ReferenceLoss
    target: float
    preview_cost: float  # seconds per preview at the output size
    stop_at_target: bool
    start: float = 0.0
    overhead: float = 0.0  # seconds spent here and on previews, not the engine's
    work_since_snapshot: int = 0
    last_seconds: float = 0.0
    snapshots: list[Snapshot] = field(default_factory=list)
    output_steps: list[float] = field(default_factory=list)
    reached: Snapshot | None = None
    steps: int = 0
    scale_start: int = 0  # steps done before the current scale
    scale: int = 0

    def on_progress(self, progress: Progress) -> None:
        if progress.iteration == 0:  # the estimate before the first step: no step to time
            return
        entry = time.perf_counter()
        if progress.scale != self.scale:
            self.scale, self.scale_start = progress.scale, self.steps
        steps_before, self.steps = self.steps, self.scale_start + progress.iteration
        if progress.preview is not None:
            # A preview at a coarse scale is smaller; its cost goes with its pixels.
            width, height = self.reference.size
            pixels = progress.preview.shape[0] * progress.preview.shape[1]
            self.overhead += self.preview_cost * pixels / (width * height)
        seconds = entry - self.start - self.overhead
        new_steps = self.steps - steps_before
        # At the output size, after its first report (whose time includes building targets).
        if progress.scale == progress.scales and progress.iteration > new_steps:
            self.output_steps.extend([(seconds - self.last_seconds) / new_steps] * new_steps)
        self.last_seconds = seconds
        if progress.preview is not None and self._snapshot_due(progress, new_steps):
            loss = self.reference(progress.preview)
            snapshot = Snapshot(self.steps, progress.scale, seconds, loss)
            self.snapshots.append(snapshot)
            log.debug(
                "engine step %d (scale %d/%d, %dx%d): %.1f s, reference loss %.6g",
                self.steps,
                progress.scale,
                progress.scales,
                *progress.size,
                seconds,
                loss,
            )
            if self.reached is None and loss <= self.target:
                self.reached = snapshot
        self.overhead += time.perf_counter() - entry

    def _snapshot_due(self, progress: Progress, steps: int) -> bool:
        """Score after each output-size step's worth of work (so the time to the target is
        known to within about one output-size step) and at the end of each scale."""
        width, height = self.reference.size
        self.work_since_snapshot += progress.size[0] * progress.size[1] * steps
        if self.work_since_snapshot >= width * height or progress.iteration == progress.iterations:
            self.work_since_snapshot = 0
            return True
        return False

    def should_cancel(self) -> bool:
        return self.stop_at_target and self.reached is not None


def preview_cost(size: tuple[int, int], device: torch.device, sync: Callable[[], None]) -> float:
    """Median seconds the engine spends making one full-size preview: the same operations
    (resize to the preview size, clamp, round to uint8, copy to the host) on a random image."""
    width, height = size
    image = torch.rand((3, height, width), device=device)
    times = []
    for _ in range(5):
        sync()
        start = time.perf_counter()
        to_array(resize(image, size).clamp(0, 1))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def snapshot_params(params: StyleParams, size: tuple[int, int]) -> StyleParams:
    """`params` with a preview after every step at the output size (or the largest allowed)."""
    long_side = min(max(size), MAX_PREVIEW, MAX_SIZE)
    if max(size) > MAX_PREVIEW:
        log.warning(
            "snapshots above %d px are enlarged previews: the loss is approximate", MAX_PREVIEW
        )
    return replace(params, preview_every=1, preview_size=long_side)


def run_engine(
    engine: StyleEngine,
    content: np.ndarray,
    style: np.ndarray,
    params: StyleParams,
    reference: ReferenceLoss,
    target: float,
    *,
    stop_at_target: bool = True,
    sync: Callable[[], None] = lambda: None,
) -> EngineRun:
    """Stylise `content` (already at the output size) and clock it until it reaches `target`
    (with `stop_at_target`) or its iterations run out."""
    size = (content.shape[1], content.shape[0])
    recorder = _Recorder(reference, target, preview_cost(size, engine.device, sync), stop_at_target)
    sync()
    recorder.start = time.perf_counter()
    engine.stylize(
        content,
        [style],
        snapshot_params(params, size),
        on_progress=recorder.on_progress,
        should_cancel=recorder.should_cancel,
    )
    return EngineRun(
        seconds=recorder.last_seconds,
        steps=recorder.steps,
        snapshots=tuple(recorder.snapshots),
        reached=recorder.reached,
        output_step_seconds=tuple(recorder.output_steps),
    )


def step_seconds(
    engine: StyleEngine,
    content: np.ndarray,
    style: np.ndarray,
    params: StyleParams,
    steps: int,
    *,
    sync: Callable[[], None] = lambda: None,
) -> tuple[float, ...]:
    """Seconds per engine step at the output size alone: one scale, `steps` steps timed after
    the steps up to the engine's first report (which also build the targets)."""
    stamps: list[tuple[int, float]] = []

    def on_progress(progress: Progress) -> None:
        if progress.iteration > 0:  # not the estimate before the first step
            stamps.append((progress.iteration, time.perf_counter()))

    size = (content.shape[1], content.shape[0])
    untimed = engine.reads_every(size)
    one_scale = replace(
        params,
        min_size=max(size),
        iterations=untimed + steps,
        initial_iterations=None,
        preview_every=0,
    )
    sync()
    engine.stylize(content, [style], one_scale, on_progress=on_progress)
    times: list[float] = []
    for (before, earlier), (after, later) in pairwise(stamps):
        times.extend([(later - earlier) / (after - before)] * (after - before))
    return tuple(times)
