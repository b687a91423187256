"""The engine's entry point: a warm model, and `stylize()` over images and frozen parameters."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DeviceMemoryError, InvalidInputError
from . import color
from .cache import TargetCache, image_digest
from .devices import (
    available_memory_bytes,
    free_unused_memory,
    has_fast_bf16,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_device,
    reuse_freed_cpu_memory,
)
from .estimate import JobTimer
from .losses import TemporalLoss
from .memory import fit_in_memory, fits_whole, smaller_tile_size
from .optimize import (
    Objective,
    layer_features,
    layer_grams,
    optimize_scale,
    shorter_lbfgs_history,
    steps_between_reads,
)
from .params import MIN_SIDE, ColorMode, Init, StyleParams
from .pyramid import plan_scales, scaled_size
from .regions import Region, check_masks, layer_masks, mask_tensor, plan_regions
from .tiles import evaluated_pixels, plan_tiles, tiled_features, tiled_grams
from .weights import load_vgg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """One optimisation step, as reported to `on_progress`."""

    scale: int  # 1-based index of the pyramid scale
    scales: int
    size: tuple[int, int]  # (width, height) processed at this scale
    iteration: int  # 1-based, within this scale
    iterations: int
    work_done: float  # 0..1, weighted by pixels (a step at a fine scale costs more)
    losses: dict[str, float]
    elapsed: float  # seconds since the job started
    peak_memory_bytes: int
    preview: np.ndarray | None = None  # small RGB uint8 image, every `preview_every` steps
    # In a tiled step, the tiles done of the step in progress (`iteration`) and their count:
    # each step visits every tile twice (tiles.TiledEvaluation). 0 otherwise.
    tile: int = 0
    tiles: int = 0
    # Before the first step (iteration 0): the seconds the job should take, from the engine's
    # earlier jobs (estimate.JobTimer); None without any.
    estimate: float | None = None
    # In a sequence (frames.stylize_frames): the 1-based frame and the frame count, and then
    # `work_done`, `elapsed` and `estimate` are the whole sequence's. 0 otherwise.
    frame: int = 0
    frames: int = 0

    @property
    def eta(self) -> float | None:
        """Seconds left, extrapolated from the work done so far (before any: the estimate)."""
        if self.work_done <= 0:
            return self.estimate
        return self.elapsed * (1 - self.work_done) / self.work_done


@dataclass(frozen=True)
class StylizeResult:
    image: np.ndarray  # same shape and channels as the content; alpha untouched
    cancelled: bool
    steps: int
    elapsed: float
    losses: dict[str, float]
    sizes: list[tuple[int, int]] = field(default_factory=list)
    peak_memory_bytes: int = 0
    target_cache_hits: int = 0  # style and content targets reused from earlier jobs


@dataclass(frozen=True)
class WarmStart:
    """Where a frame of a sequence starts, and what holds it there (frames.py): the result of
    the frame before warped to this frame along the optical flow, at the processing size and in
    the job's colour space (luminance with `preserve_colors` luminance), and the temporal loss's
    weight of each pixel, 0 where the flow cannot follow it (flow.trusted_pixels)."""

    image: torch.Tensor  # 3 x H x W on the engine's device
    weights: torch.Tensor  # 1 x H x W, 0..1


ProgressCallback = Callable[[Progress], None]
CancelCheck = Callable[[], bool]
WarningCallback = Callable[[str], None]
# The steps of the whole job so far, and the image as the result would be if the job ended
# there (StyleParams.snapshot_every).
SnapshotCallback = Callable[[int, np.ndarray], None]


# "auto": bf16 autocast where the device has fast bf16 (devices.has_fast_bf16), else fp32;
# "fp32": fp32 everywhere.
PRECISIONS = ("auto", "fp32")


class StyleEngine:
    """Holds VGG16 on a device, and the loss targets of recent jobs, so that repeated jobs
    start at once.

    The underscored keywords are for measurements only (`neural-style bench` and the GPU suite,
    gpu_suite/), to take one speed-up away at a time; the daemon and `stylize` never set them.
    `_precision`: one of PRECISIONS; `_cuda_graphs=False` runs every CUDA step eagerly;
    `_steps_between_reads` fixes how often a scale reads its loss back."""

    def __init__(
        self,
        weights: str = "imagenet",
        device: str = "auto",
        *,
        seed: int = 0,
        target_cache_bytes: int = 256 * 2**20,
        max_memory_bytes: int | None = None,
        _precision: str = "auto",
        _cuda_graphs: bool = True,
        _steps_between_reads: int | None = None,
    ) -> None:
        if _precision not in PRECISIONS:
            raise ValueError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {_precision!r}"
            )
        self.device = resolve_device(device)
        # On CUDA, each step of a scale up to optimize.CAPTURE_MAX_PIXELS replays one captured
        # graph (engine/capture.py); False runs every step eagerly, for comparison.
        self._cuda_graphs = _cuda_graphs and self.device.type == "cuda"
        # How often a scale reads its loss back; None: optimize.steps_between_reads's choice.
        self._steps_between_reads = _steps_between_reads
        self.targets = TargetCache(target_cache_bytes)
        self.timer = JobTimer()  # the speed of earlier jobs, for the next one's estimate
        # What any one job may use, as if the device had no more free: a daemon's --max-memory.
        self.max_memory_bytes = max_memory_bytes
        model = load_vgg(weights, seed=seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # a static shape per scale: autotune pays off
        if self.device.type == "cpu":
            reuse_freed_cpu_memory()
        # "fp32" is for measuring what bf16 costs in convergence against what it saves.
        if _precision == "auto" and has_fast_bf16(self.device):
            # bf16 convolutions (tensor cores, AMX) are fastest on NHWC tensors.
            model = model.to(memory_format=torch.channels_last)
            model.channels_last = True
            model.mixed_precision = True
        self.model = model.to(self.device)

    def warm_up(self, side: int = 128) -> float:
        """Run a tiny job (`side` px, two steps) and forget its targets, so that the device's
        one-time set-up (on CUDA: kernels loaded on first use, the cuBLAS and cuDNN handles,
        graph capture) happens now, not in the first user's job. Returns its seconds."""
        start = time.perf_counter()
        image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        self.stylize(image, [image], StyleParams(iterations=2, min_size=side))
        self.targets.clear()
        return time.perf_counter() - start

    def reads_every(self, size: tuple[int, int]) -> int:
        """Steps between reads of the loss at a scale of `size` (width, height)."""
        if self._steps_between_reads is not None:
            return self._steps_between_reads
        return steps_between_reads(self.device, size)

    def stylize(
        self,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        params: StyleParams | None = None,
        *,
        style_masks: Sequence[np.ndarray | None] | None = None,
        style_source_masks: Sequence[np.ndarray | None] | None = None,
        init_image: np.ndarray | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        on_warning: WarningCallback | None = None,
        on_snapshot: SnapshotCallback | None = None,
    ) -> StylizeResult:
        """Stylise `content` (H x W x 3 or 4, uint8) with `styles` (each H x W x 3 or 4).
        `style_masks`, one per style or None: the part of the content (an H x W uint8 mask of
        the content's size, 255 inside, soft edges blend) that the style rules; a style without
        one applies everywhere, and content that no style covers stays as it is.
        `style_source_masks`, one per style or None: the part of the style image (its size) to
        learn the style from. What the job had to change to finish (a scale run again after
        running out of memory) goes to `on_warning`, else to this module's log; out of memory
        still, DeviceMemoryError. After every `params.snapshot_every` steps of the whole job,
        and every `params.live_interval` seconds (from the first step), `on_snapshot(steps,
        image)` gets the image that the result would be if the job ended there (a
        StylizeResult's `image`: the content's size and alpha)."""
        params = params or StyleParams()
        check_image(content, "content image")
        blend = check_styles(styles, params)
        masks = check_masks(
            style_masks,
            [content.shape[:2]] * len(styles),
            "style mask",
            lambda _index: "the content",
        )
        source_masks = check_masks(
            style_source_masks,
            [style.shape[:2] for style in styles],
            "style source mask",
            lambda index: f"style image {index}",
        )
        for index, mask in enumerate(source_masks, start=1):
            if mask is not None and not mask.any():
                raise InvalidInputError(
                    f"style source mask {index} is black: no part of style image {index} to "
                    "learn from"
                )
        if init_image is not None:
            check_image(init_image, "init image")
        if params.init is Init.IMAGE and init_image is None:
            raise InvalidInputError("init 'image' needs an init image")
        job = _Job(
            self,
            content,
            styles,
            blend,
            params,
            init_image,
            on_progress,
            should_cancel,
            on_warning,
            masks=masks,
            source_masks=source_masks,
            on_snapshot=on_snapshot,
        )
        return self.run_job(job)

    def run_job(self, job: _Job) -> StylizeResult:
        """Run a prepared job; out of memory still after its own fallbacks, DeviceMemoryError."""
        try:
            return job.run()
        except torch.OutOfMemoryError:
            users = "the GPU" if self.device.type == "cuda" else "memory"
            raise DeviceMemoryError(
                f"out of memory on {self.device} at {max(job.sizes[-1])} px: try a smaller "
                f"size, or close other programs that use {users}"
            ) from None


def check_styles(styles: Sequence[np.ndarray], params: StyleParams) -> Sequence[float]:
    """Check the style images and their blend weights; the weights, one per style."""
    for i, style in enumerate(styles, start=1):
        check_image(style, f"style image {i}")
    if not styles:
        raise InvalidInputError("at least one style image is needed")
    blend = params.style_blend or (1.0,) * len(styles)
    if len(blend) != len(styles):
        raise InvalidInputError(f"{len(blend)} style blend weights for {len(styles)} styles")
    return blend


def check_image(array: np.ndarray, what: str) -> None:
    """An H x W x 3 or 4 uint8 array with sides of at least MIN_SIDE, else InvalidInputError."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise InvalidInputError(f"{what}: expected a uint8 array")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InvalidInputError(f"{what}: expected H x W x 3 or H x W x 4, got {array.shape}")
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InvalidInputError(
            f"{what} is {width}x{height}: each side must be at least {MIN_SIDE} pixels"
        )


def to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """RGB of an H x W x C uint8 array as a 3 x H x W float tensor in [0, 1]."""
    rgb = np.ascontiguousarray(array[..., :3])
    if not rgb.flags.writeable:  # torch warns about read-only memory, though nothing writes it
        rgb = rgb.copy()
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div_(255)


def to_array(image: torch.Tensor) -> np.ndarray:
    """A 3 x H x W tensor in [0, 1] as an H x W x 3 uint8 array (rounded, not truncated)."""
    rgb = image.detach().clamp(0, 1).mul(255).round_().to(torch.uint8)
    return rgb.permute(1, 2, 0).cpu().numpy()


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """3 x H x W (or N x 3 x H x W) resized to (width, height): antialiased bicubic."""
    width, height = size
    batched = image if image.dim() == 4 else image[None]
    if batched.shape[-2:] == (height, width):
        return image
    out = F.interpolate(
        batched.float(), size=(height, width), mode="bicubic", antialias=True, align_corners=False
    )
    return out if image.dim() == 4 else out[0]


class _Job:
    """The state of one stylize() call: prepared images, the pyramid, progress bookkeeping."""

    def __init__(
        self,
        engine: StyleEngine,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        blend: Sequence[float],
        params: StyleParams,
        init_image: np.ndarray | None,
        on_progress: ProgressCallback | None,
        cancel: CancelCheck | None,
        on_warning: WarningCallback | None = None,
        *,
        masks: Sequence[np.ndarray | None] = (),
        source_masks: Sequence[np.ndarray | None] = (),
        warm_start: WarmStart | None = None,
        on_snapshot: SnapshotCallback | None = None,
    ) -> None:
        self.engine, self.params = engine, params
        self.warm_start = warm_start
        self.device = engine.device
        self.alpha = content[..., 3].copy() if content.shape[2] == 4 else None
        self.content_key = image_digest(content)
        self.style_keys = [image_digest(s) for s in styles]
        self.content = to_tensor(content, self.device)
        self.styles = [to_tensor(s, self.device) for s in styles]
        self.blend = [w / sum(blend) for w in blend]
        masks = list(masks) or [None] * len(styles)
        source_masks = list(source_masks) or [None] * len(styles)
        self.content_masks = [None if m is None else mask_tensor(m, self.device) for m in masks]
        # Without content masks, one region: the blend of every style, as the unguided loss.
        self.guided = any(mask is not None for mask in masks)
        self.regions = plan_regions(self.blend, [mask is not None for mask in masks])
        self.source_masks = [
            None if m is None else mask_tensor(m, self.device) for m in source_masks
        ]
        self.source_keys = [None if m is None else image_digest(m) for m in source_masks]
        self.init_image = None if init_image is None else to_tensor(init_image, self.device)
        self.on_progress = on_progress or (lambda _progress: None)
        self.should_cancel = cancel or (lambda: False)
        self.on_warning = on_warning or partial(log.warning, "%s")
        self.on_snapshot = on_snapshot
        self.last_snapshot = -math.inf  # perf_counter seconds; the first live one is due at once
        self.generator = torch.Generator(device="cpu")
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        height, width = content.shape[:2]
        self.sizes, self.iterations, self.tolerance = plan_scales(
            width, height, params, warm_start=warm_start is not None
        )
        self.available: int | None = None
        self.tiles_forced = params.tile_size is not None
        self._plan_work()
        self.steps = 0
        self.steps_before_scale = 0
        self.cancelled = False
        self.last_losses: dict[str, float] = {}
        # The result at the processing size, in the job's colour space (the next frame's warm
        # start in a sequence); None before the first step.
        self.final: torch.Tensor | None = None

    def run(self) -> StylizeResult:
        self.start = time.perf_counter()
        hits_before = self.engine.targets.hits
        available = self._memory_for_the_job()
        self.available = available
        if available is not None:  # before any work: see memory.py
            self.params = fit_in_memory(
                self.sizes[-1],
                self.params,
                self.engine.model.mixed_precision,
                available,
                self.on_warning,
            )
            self._plan_work()  # with the tiles the memory asks for
        reset_peak_memory(self.device)
        timer = self.engine.timer
        content_run, styles_run = self._colour_prepared()
        image = None
        # Before any work, the job's estimated time (the first step checks for a cancel).
        self.on_progress(self._progress(0, 0, 0.0, estimate=timer.estimate(self.work_planned)))
        for index, size in enumerate(self.sizes):
            start = self._start_image(image, content_run, size)
            objective = self._objective(content_run, styles_run, size)
            self.steps_before_scale = self.steps
            scale_start = time.perf_counter()
            best, losses = self._optimize_scale(index, objective, start)
            seconds = time.perf_counter() - scale_start
            timer.record_scale(self.step_work[index], self.steps - self.steps_before_scale, seconds)
            image = best[0]
            if losses is not None:
                self.last_losses = losses  # the returned image's, not the last step's
            if self.cancelled:
                break
        self.final = image
        if not self.cancelled:
            timer.record_job(self.work_total, self.work_planned)
        result = self._finish(image, content_run.shape[-1], content_run.shape[-2])
        return StylizeResult(
            image=result,
            cancelled=self.cancelled,
            steps=self.steps,
            elapsed=time.perf_counter() - self.start,
            losses=self.last_losses,
            sizes=list(self.sizes),
            peak_memory_bytes=peak_memory_bytes(self.device),
            target_cache_hits=self.engine.targets.hits - hits_before,
        )

    def _plan_work(self) -> None:
        """The progress fraction's weights: each scale's steps by their cost, the pixels a
        step evaluates (a tiled step evaluates each tile's halo too, and every tile twice)."""
        self.step_work = [
            evaluated_pixels(width, height, self._tile_size_at((width, height)))
            for width, height in self.sizes
        ]
        work = [cost * n for cost, n in zip(self.step_work, self.iterations, strict=True)]
        self.work_before = [sum(work[:i]) for i in range(len(work))]
        self.work_planned = sum(work)
        self.work_total = self.work_planned or 1  # less the work of scales that end early

    def _tile_size_at(self, size: tuple[int, int]) -> int | None:
        """The tiles a scale of `size` is evaluated in; None: whole. Tiles the caller asked for
        apply to every scale larger than them; tiles the memory plan chose only to the scales
        that do not fit whole."""
        tile_size = self.params.tile_size
        if tile_size is None or self.tiles_forced or self.available is None:
            return tile_size
        mixed_precision = self.engine.model.mixed_precision
        return None if fits_whole(size, self.params, mixed_precision, self.available) else tile_size

    def _memory_for_the_job(self) -> int | None:
        """The bytes the job may take: what the device has free, capped by the engine's and
        the job's limits; None where neither the device nor a cap says."""
        limits = [available_memory_bytes(self.device), self.engine.max_memory_bytes]
        if self.params.max_memory is not None:
            limits.append(round(self.params.max_memory * 2**30))
        known = [limit for limit in limits if limit is not None]
        return min(known) if known else None

    def _optimize_scale(
        self, index: int, objective: Objective, start: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float] | None]:
        """One scale from `start`. Out of memory with a long L-BFGS history, the scale runs again
        from the same start with a short one, and then in ever smaller tiles, which the scales
        after it keep: the scales before are not run again, as they would be if the whole job
        were, and the job is never shrunk where tiles let it fit."""
        size = self.sizes[index]
        while True:
            try:
                return optimize_scale(
                    objective,
                    start[None],
                    self.iterations[index],
                    self.params,
                    partial(self._after_step, index),
                    tolerance=self.tolerance,
                    read_every=self.engine.reads_every(size),
                    read_at=None if self.on_snapshot is None else self._snapshot_due,
                    cuda_graph=self.engine._cuda_graphs,
                    tile_size=self._tile_size_at(size),
                    on_tile=partial(self._after_tile, index),
                )
            except torch.OutOfMemoryError:
                shorter = shorter_lbfgs_history(self.params)
                tile_size = smaller_tile_size(size, self._tile_size_at(size))
                if shorter is None and tile_size is None:
                    raise
            # Out of the except block, whose traceback held the failed run's optimiser.
            free_unused_memory(self.device)
            if shorter is not None:
                self.params = replace(self.params, lbfgs_history=shorter)
                change = f"with a shorter L-BFGS history ({shorter} steps)"
            else:
                self.params = replace(self.params, tile_size=tile_size)
                self.tiles_forced = True  # the estimate said whole would fit, and it did not
                change = f"evaluating it in {tile_size} px tiles"
            self.on_warning(f"out of memory at {max(size)} px: retried {change}")

    def _colour_prepared(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        mode = self.params.preserve_colors
        if mode is ColorMode.LUMINANCE:
            return color.luminance(self.content), [
                color.match_luminance(s, self.content) for s in self.styles
            ]
        if mode is ColorMode.HISTOGRAM:
            return self.content, [
                color.match_color_statistics(s, self.content) for s in self.styles
            ]
        return self.content, self.styles

    def _start_image(self, previous, content_run, size) -> torch.Tensor:
        if previous is not None:
            return resize(previous, size)  # coarse-to-fine: refine the last scale's result
        if self.warm_start is not None:
            return resize(self.warm_start.image, size)
        init = self.params.init
        if self.init_image is not None:
            start = resize(self.init_image, size)
            if self.params.preserve_colors is ColorMode.LUMINANCE:
                return color.luminance(start)
            return start
        if init is Init.NOISE:
            noise = torch.rand((3, size[1], size[0]), generator=self.generator)
            return noise.to(self.device)
        return resize(content_run, size)

    def _objective(self, content_run, styles_run, size) -> Objective:
        """The loss for one scale, its targets from the cache where an earlier job (or scale
        of this one) already computed them."""
        params, model, cache = self.params, self.engine.model, self.engine.targets
        mode = params.preserve_colors
        content_features = cache.get_or_compute(
            ("content", self.content_key, mode, size, params.content_layers),
            partial(
                _features_at,
                model,
                content_run,
                size,
                params.content_layers,
                self._tile_size_at(size),
            ),
        )
        # With colour preservation the prepared style depends on the content too.
        colour_key = (mode, None if mode is ColorMode.NONE else self.content_key)
        style_grams = []
        for style, key, source_mask, source_key in zip(
            styles_run, self.style_keys, self.source_masks, self.source_keys, strict=True
        ):
            style_size = self._style_size(style, size)
            style_grams.append(
                cache.get_or_compute(
                    ("style", key, source_key, colour_key, style_size, params.style_layers),
                    partial(
                        _grams_at,
                        model,
                        style,
                        style_size,
                        params.style_layers,
                        self._tile_size_at(style_size),
                        source_mask,
                    ),
                )
            )
        # Each region's target, the blend of its styles' Gram matrices: R x C x C per layer.
        targets = {
            name: torch.cat([_blended(style_grams, region, name) for region in self.regions])
            for name in params.style_layers
        }
        temporal = None
        if self.warm_start is not None:
            temporal = TemporalLoss(
                resize(self.warm_start.image, size)[None],
                resize(self.warm_start.weights, size)[None],
            )
        region_masks = None
        if self.guided:
            masks = [None if r.mask is None else self.content_masks[r.mask] for r in self.regions]
            region_masks = layer_masks(masks, size, params.style_layers, self.device)
        return Objective(model, content_features, targets, params, region_masks, temporal)

    def _style_size(self, style: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
        """The style image's size for this scale: its long side at `style_scale` times the
        scale's, never enlarged beyond its own size unless asked, never under what VGG sees."""
        height, width = style.shape[-2:]
        long_side = round(self.params.style_scale * max(size))
        if not self.params.style_upscale:
            long_side = min(long_side, max(width, height))
        long_side = max(long_side, round(MIN_SIDE * max(width, height) / min(width, height)))
        return scaled_size(width, height, long_side)

    def _drop_skipped_work(self, index: int, iteration: int) -> None:
        """A scale that ended early leaves its remaining work out of the progress fraction."""
        skipped = (self.iterations[index] - iteration) * self.step_work[index]
        self.work_total = max(self.work_total - skipped, 1)
        for later in range(index + 1, len(self.sizes)):
            self.work_before[later] -= skipped

    def _after_step(
        self,
        index: int,
        iteration: int,
        image: torch.Tensor,
        losses: dict[str, float],
        last: bool,
        best: torch.Tensor,
    ) -> bool:
        """Progress, a preview, a snapshot and the cancel check, at each read of the loss
        (every step on a CPU, every few on CUDA: optimize.steps_between_reads; and at each
        step a snapshot is due)."""
        steps_before, self.steps = self.steps, self.steps_before_scale + iteration
        if last:
            self._drop_skipped_work(index, iteration)
        self.last_losses = losses
        every = self.params.preview_every
        preview = None
        if every and self.steps // every > steps_before // every:  # a multiple of it passed
            preview = self._preview(image[0])
        if self.on_snapshot is not None and self._snapshot_due(iteration):
            self.on_snapshot(self.steps, self._snapshot(best[0]))
            self.last_snapshot = time.perf_counter()
        return self._report(self._progress(index, iteration, float(iteration), preview=preview))

    def _snapshot_due(self, iteration: int) -> bool:
        """Whether step `iteration` of the scale running ends a multiple of `snapshot_every`
        steps of the whole job, or `live_interval` seconds have passed since the last snapshot.
        The loop reads the loss there too, so that a snapshot lands on the step asked for
        however far apart the reads are."""
        every, interval = self.params.snapshot_every, self.params.live_interval
        if every > 0 and (self.steps_before_scale + iteration) % every == 0:
            return True
        return interval is not None and time.perf_counter() - self.last_snapshot >= interval

    def _snapshot(self, best: torch.Tensor) -> np.ndarray:
        """The best image so far, finished as the result would be were the job to end now (a
        cancel at this step returns this very image), at the content's size. Not the latest
        iterate, which previews show: L-BFGS without a line search can climb back up after a
        good step, and the result is the best image."""
        return self._finish(best, self.content.shape[-1], self.content.shape[-2])

    def _after_tile(
        self, index: int, iteration: int, pass_number: int, tile: int, tiles: int
    ) -> bool:
        """Progress and the cancel check after each tile of a tiled step: a step of a large
        image takes minutes, and neither the progress bar nor a cancel can wait that long."""
        done = (pass_number - 1) * tiles + tile
        steps_done = iteration - 1 + done / (2 * tiles)
        progress = self._progress(index, iteration, steps_done, tile=done, tiles=2 * tiles)
        return self._report(progress)

    def _report(self, progress: Progress) -> bool:
        """`progress` to the caller, then the cancel check; whether to go on."""
        self.on_progress(progress)
        self.cancelled = bool(self.should_cancel())
        return not self.cancelled

    def _progress(
        self,
        index: int,
        iteration: int,
        steps_done: float,
        *,
        preview: np.ndarray | None = None,
        tile: int = 0,
        tiles: int = 0,
        estimate: float | None = None,
    ) -> Progress:
        """Progress at step `iteration` of scale `index` with `steps_done` of its steps' work
        done."""
        work = self.work_before[index] + self.step_work[index] * steps_done
        return Progress(
            scale=index + 1,
            scales=len(self.sizes),
            size=self.sizes[index],
            iteration=iteration,
            iterations=self.iterations[index],
            work_done=work / self.work_total,
            losses=self.last_losses,
            elapsed=time.perf_counter() - self.start,
            peak_memory_bytes=peak_memory_bytes(self.device),
            preview=preview,
            tile=tile,
            tiles=tiles,
            estimate=estimate,
        )

    def _preview(self, image: torch.Tensor) -> np.ndarray:
        height, width = image.shape[-2:]
        small = scaled_size(width, height, min(self.params.preview_size, max(width, height)))
        return self._finish(image, *small)[..., :3]

    def _finish(self, image: torch.Tensor | None, width: int, height: int) -> np.ndarray:
        """The result at (width, height), colours recombined, alpha re-attached at full size."""
        full = (height, width) == tuple(self.content.shape[-2:])
        if image is None:  # cancelled before the first step
            image = self.content
        image = resize(image, (width, height)).clamp(0, 1)
        if self.params.preserve_colors is ColorMode.LUMINANCE:
            image = color.with_chroma_of(image, resize(self.content, (width, height)))
        rgb = to_array(image)
        if full and self.alpha is not None:
            return np.dstack([rgb, self.alpha])
        return rgb


def _blended(
    style_grams: list[dict[str, torch.Tensor]], region: Region, layer: str
) -> torch.Tensor:
    """A region's target at `layer`: its styles' Gram matrices by their weights."""
    pairs = zip(region.styles, region.weights, strict=True)
    return torch.stack([weight * style_grams[i][layer] for i, weight in pairs]).sum(0)


def _features_at(
    model, image: torch.Tensor, size, layers, tile_size: int | None
) -> dict[str, torch.Tensor]:
    resized = resize(image, size)[None]
    if tile_size is not None and max(size) > tile_size:
        return tiled_features(model, resized, layers, plan_tiles(size[1], size[0], tile_size))
    return layer_features(model, resized, layers)


def _grams_at(
    model, image: torch.Tensor, size, layers, tile_size: int | None, mask: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """The Gram matrices of `image` at `size`; inside `mask` (1 x 1 x H x W) where there is one."""
    resized = resize(image, size)[None]
    masks = None if mask is None else layer_masks([mask], size, layers, resized.device)
    if tile_size is not None and max(size) > tile_size:
        tiles = plan_tiles(size[1], size[0], tile_size)
        return tiled_grams(model, resized, layers, tiles, masks)
    return layer_grams(model, resized, layers, masks)
