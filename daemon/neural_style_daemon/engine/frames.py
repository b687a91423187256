"""The frames of an animation without flicker (Ruder, Dosovitskiy and Brox 2016, "Artistic
style transfer for videos"): each frame after the first starts from the result of the frame
before, warped to it along the optical flow of the content frames, and a temporal loss holds it
there on the pixels the flow can follow.

Departures from the paper: the flow is DIS (flow.py), not DeepFlow or EpicFlow; the frames
after the first run the finest scale alone, with a finer scale's iterations and the plateau
stop, where the paper ran its full iteration count on every frame (the warm start already has
the look, and the stop ends it sooner: docs/quality.md, "Animation frames"); only the
short-term loss (the frame before), not the long-term one over several earlier frames.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch

from ..errors import InvalidInputError
from .flow import grey, optical_flow, trusted_pixels, warp
from .params import Init, StyleParams
from .pyramid import plan_scales
from .stylize import (
    CancelCheck,
    Progress,
    ProgressCallback,
    StyleEngine,
    WarmStart,
    WarningCallback,
    _Job,
    check_image,
    check_styles,
)

FrameCallback = Callable[[int, np.ndarray], None]


@dataclass(frozen=True)
class FramesResult:
    """The frames done, in order: all of them, or those finished before a cancel."""

    images: list[np.ndarray]  # each the frame's shape, alpha untouched
    cancelled: bool
    steps: list[int] = field(default_factory=list)  # per frame done
    elapsed: float = 0.0
    target_cache_hits: int = 0
    partial: np.ndarray | None = None  # cancelled: the frame in progress, as far as it got
    peak_memory_bytes: int = 0  # the most any frame's job held


def check_frames(frames: Sequence[np.ndarray]) -> None:
    """At least two frames, each a valid image, all of the first one's size."""
    if len(frames) < 2:
        raise InvalidInputError(
            f"a sequence needs at least 2 frames, got {len(frames)}: stylise a single image "
            "on its own"
        )
    for index, frame in enumerate(frames, start=1):
        check_image(frame, f"frame {index}")
    height, width = frames[0].shape[:2]
    for index, frame in enumerate(frames[1:], start=2):
        if frame.shape[:2] != (height, width):
            raise InvalidInputError(
                f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 1 is "
                f"{width}x{height}: every frame must have the same size"
            )


def stylize_frames(
    engine: StyleEngine,
    frames: Sequence[np.ndarray],
    styles: Sequence[np.ndarray],
    params: StyleParams | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_frame: FrameCallback | None = None,
    on_warning: WarningCallback | None = None,
) -> FramesResult:
    """Stylise `frames` (each H x W x 3 or 4 uint8, all one size, at least two, in order) with
    `styles`, as `engine.stylize` does one image, each frame held near the one before.

    The first frame is an ordinary job. Each later one starts from the result of the frame
    before warped along the flow from this frame to that one (both at the processing size), with
    the temporal loss (`params.temporal_weight`) on the pixels the flow can follow. The style
    targets are computed once, for the first frame: the engine's target cache has them for the
    rest. `on_progress` hears every step, with the frame and the whole sequence's work done;
    `on_frame(index, image)` gets each frame (0-based) as soon as it is done. A cancel keeps the
    frames done, and the one in progress apart, in `partial`."""
    params = params or StyleParams()
    check_frames(frames)
    blend = check_styles(styles, params)
    if params.init is Init.IMAGE:
        raise InvalidInputError("a sequence starts from its content or noise, not an init image")
    sequence = _Sequence(engine, frames, params, on_progress)
    images: list[np.ndarray] = []
    steps: list[int] = []
    hits = peak = 0
    previous: torch.Tensor | None = None
    partial = None
    for index, frame in enumerate(frames):
        warm_start = None if previous is None else sequence.warm_start(index, previous)
        job = _Job(
            engine,
            frame,
            styles,
            blend,
            params,
            None,
            sequence.reporter(index),
            should_cancel,
            on_warning,
            warm_start=warm_start,
        )
        result = engine.run_job(job)
        hits += result.target_cache_hits
        peak = max(peak, result.peak_memory_bytes)
        if result.cancelled or job.final is None:
            partial = result.image
            break
        images.append(result.image)
        steps.append(result.steps)
        previous = job.final
        if on_frame is not None:
            on_frame(index, result.image)
    return FramesResult(
        images=images,
        cancelled=partial is not None,
        steps=steps,
        elapsed=time.perf_counter() - sequence.start,
        target_cache_hits=hits,
        partial=partial,
        peak_memory_bytes=peak,
    )


class _Sequence:
    """The sequence's content frames at the processing size (grey, for the flow) and its
    progress: each frame's share of the work is its planned steps, the first frame's several
    scales against the finest scale alone of the others."""

    def __init__(
        self,
        engine: StyleEngine,
        frames: Sequence[np.ndarray],
        params: StyleParams,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.start = time.perf_counter()
        self.device = engine.device
        self.frames = frames
        self.on_progress = on_progress
        height, width = frames[0].shape[:2]
        sizes, iterations, _ = plan_scales(width, height, params)
        self.size = sizes[-1]  # (width, height)
        first = sum(w * h * n for (w, h), n in zip(sizes, iterations, strict=True))
        _, later_iterations, _ = plan_scales(width, height, params, warm_start=True)
        later = self.size[0] * self.size[1] * later_iterations[0]
        work = [float(first)] + [float(later)] * (len(frames) - 1)
        total = sum(work) or 1.0
        self.shares = [w / total for w in work]
        self.before = [sum(self.shares[:i]) for i in range(len(work))]
        self._grey: tuple[int, np.ndarray] | None = None

    def grey_at_size(self, index: int) -> np.ndarray:
        """Frame `index` in grey at the processing size (the last one made is kept: each
        frame is the later of one pair and the earlier of the next)."""
        if self._grey is None or self._grey[0] != index:
            frame = grey(self.frames[index])
            if (frame.shape[1], frame.shape[0]) != self.size:
                frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
            self._grey = (index, frame)
        return self._grey[1]

    def warm_start(self, index: int, previous: torch.Tensor) -> WarmStart:
        """Frame `index`'s start: `previous` (the result of the frame before, at the processing
        size) warped along the flow from this frame to that one, and the pixels it can follow."""
        earlier, later = self.grey_at_size(index - 1), self.grey_at_size(index)
        backward = optical_flow(later, earlier)
        forward = optical_flow(earlier, later)
        weights = torch.from_numpy(trusted_pixels(forward, backward)).to(self.device)
        return WarmStart(image=warp(previous, backward), weights=weights[None])

    def reporter(self, index: int) -> Callable[[Progress], None]:
        """Frame `index`'s progress as the sequence's."""

        def report(progress: Progress) -> None:
            if self.on_progress is None:
                return
            share = self.shares[index]
            estimate = progress.estimate
            self.on_progress(
                replace(
                    progress,
                    frame=index + 1,
                    frames=len(self.frames),
                    work_done=self.before[index] + share * progress.work_done,
                    elapsed=time.perf_counter() - self.start,
                    # One job's estimate, for the whole sequence by the share of its work.
                    estimate=None if estimate is None else estimate / share,
                )
            )

        return report
