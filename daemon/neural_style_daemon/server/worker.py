"""The worker process: loads the engine once, keeps it warm, and runs the jobs the broker sends
over the pipe, one at a time. Only this process imports torch (and touches the GPU).

Cancel is cooperative: between optimisation steps the engine asks `should_cancel`, which reads
the pipe for a CancelJob naming the running job. A job's bad input becomes a JobFailed with a
code, never a crash of the process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.connection import Connection

import numpy as np
import torch

from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.images import RawImage

from ..engine.devices import free_unused_memory, release_free_heap
from ..engine.frames import stylize_frames
from ..engine.optimize import shorter_lbfgs_history
from ..engine.params import MIN_SIDE, StyleParams
from ..engine.pyramid import processing_long_side
from ..engine.stylize import Progress, StyleEngine
from ..errors import DeviceMemoryError, InvalidInputError, StyleTransferError
from ..imageio import load_image
from .events import (
    CancelJob,
    JobDone,
    JobFailed,
    JobProgress,
    RunJob,
    StopWorker,
    WorkerConfig,
    WorkerReady,
    WorkerStartFailed,
)
from .job_params import to_style_params

log = logging.getLogger(__name__)

EXIT_START_FAILED = 3
_BROKER_GONE = (EOFError, BrokenPipeError, ConnectionResetError)
STYLE_CACHE_ITEMS = 8
STYLE_CACHE_BYTES = 512 << 20


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """The process's body: load, say ready, serve jobs until told to stop or orphaned."""
    # Ctrl-C in the daemon's terminal reaches the whole process group: the broker decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _configure_logging(config)
    try:
        engine = _load_engine(config)
    except Exception as error:  # any failure to load must reach the broker, not just stderr
        message = str(error) if isinstance(error, StyleTransferError) else repr(error)
        log.error("could not load the model: %s", message)
        conn.send(WorkerStartFailed(message))
        raise SystemExit(EXIT_START_FAILED) from None
    conn.send(
        WorkerReady(describe_device(engine.device), os.getpid(), _memory_in_use(engine.device))
    )
    log.info("worker ready on %s (pid %d)", describe_device(engine.device), os.getpid())
    JobRunner(engine, conn, config).serve()


def _load_engine(config: WorkerConfig) -> StyleEngine:
    faults = config.faults
    if faults.slow_start:
        log.warning("injected fault: sleeping %g s before loading the model", faults.slow_start)
        time.sleep(faults.slow_start)
    if faults.fail_on_start:
        raise StyleTransferError("injected fault: fail_on_start")
    engine = StyleEngine(config.weights, config.device, max_memory_bytes=config.max_memory_bytes)
    if engine.device.type == "cuda":
        # Before the worker says it is ready: CUDA's first-use costs (loading kernels, library
        # handles) would otherwise land on the first job. A CPU has little of that, and the
        # tests start many CPU workers.
        log.info("warmed the device up in %.2f s", engine.warm_up())
    return engine


def _configure_logging(config: WorkerConfig) -> None:
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        # As the broker's command line names them, so that both read alike in one log.
        logging.addLevelName(level, logging.getLevelName(level).lower())
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if config.log_file:
        handlers.append(logging.FileHandler(config.log_file, encoding="utf-8"))
    logging.basicConfig(
        level=config.log_level,
        handlers=handlers,
        force=True,
        format="%(asctime)s worker[%(process)d] %(levelname)s %(name)s: %(message)s",
    )


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def _memory_in_use(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return None


class StyleCache:
    """Decoded style images by the SHA-256 of their encoded bytes, least recently used first
    out. (Gram targets would save more: see the report on the engine hook this needs.)"""

    def __init__(self, max_items: int = STYLE_CACHE_ITEMS, max_bytes: int = STYLE_CACHE_BYTES):
        self.max_items, self.max_bytes = max_items, max_bytes
        self._arrays: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0

    def get(self, data: bytes, what: str) -> np.ndarray:
        key = hashlib.sha256(data).digest()
        array = self._arrays.get(key)
        if array is not None:
            self._arrays.move_to_end(key)
            self.hits += 1
            return array
        array = load_image(bytes(data), what)  # InvalidInputError for anything unreadable
        self._arrays[key] = array
        while len(self._arrays) > self.max_items or (
            len(self._arrays) > 1 and sum(a.nbytes for a in self._arrays.values()) > self.max_bytes
        ):
            self._arrays.popitem(last=False)
        return array


class RateLimit:
    """At most one event per `interval` seconds, except those forced through."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self._clock = interval, clock
        self._last = -math.inf

    def allow(self, force: bool = False) -> bool:
        now = self._clock()
        if force or now - self._last >= self.interval:
            self._last = now
            return True
        return False


class CancelWatch:
    """The engine's `should_cancel` for one job: reads the pipe between steps."""

    def __init__(self, conn: Connection, job_id: str, ignore: bool = False) -> None:
        self.conn, self.job_id = conn, job_id
        self.ignore = ignore  # the injected fault ignore_cancel: read the pipe, never stop
        self.cancelled = False
        self.stop_after = False  # a StopWorker arrived: exit once this job has ended

    def __call__(self) -> bool:
        while not self.cancelled and self.conn.poll():
            message = self.conn.recv()
            if isinstance(message, CancelJob) and message.job_id == self.job_id:
                self.cancelled = not self.ignore
            elif isinstance(message, StopWorker):
                self.cancelled = self.stop_after = not self.ignore
        return self.cancelled


def fail_at_step(check: Callable[[], bool], step: int, times: int) -> Callable[[], bool]:
    """`check`, but the injected fault oom_at_step: torch's out-of-memory error at the `step`-th
    step of each of the first `times` attempts, an attempt running from the start or from the
    last such error (the engine's run of a scale again, or the worker's job at a smaller
    size). The error can be built, and raised, on a CPU-only build of torch."""
    steps, failures = 0, 0

    def check_or_fail() -> bool:
        nonlocal steps, failures
        steps += 1
        if steps == step and failures < times:
            steps, failures = 0, failures + 1
            raise torch.OutOfMemoryError(f"injected fault: out of memory at step {step}")
        return check()

    return check_or_fail


def sleep_first(check: Callable[[], bool], seconds: float) -> Callable[[], bool]:
    """`check`, after sleeping `seconds`: the injected fault slow_steps."""

    def slowly() -> bool:
        time.sleep(seconds)
        return check()

    return slowly


def retry_size(size: int, floor: int, fitting: int | None = None) -> int | None:
    """The processing size to retry at after running out of memory at `size`: `fitting`, the
    size the engine reckoned would fit (the CPU's check), where it gave one under `size`, else
    half the pixels (the long side over sqrt 2); not under `floor`; None when `size` is the
    floor."""
    if size <= floor:
        return None
    smaller = fitting if fitting is not None and fitting < size else int(size / math.sqrt(2))
    return max(floor, smaller)


def progress_event(job_id: str, progress: Progress) -> JobProgress:
    """The engine's progress as the broker wants it: finite losses only (a diverging step must
    not make the broker's message invalid), the preview as raw RGB."""
    preview = None
    if progress.preview is not None:
        height, width = progress.preview.shape[:2]
        preview = RawImage(np.ascontiguousarray(progress.preview).tobytes(), width, height, 3)
    losses = {name: value for name, value in progress.losses.items() if math.isfinite(value)}
    eta = progress.eta
    return JobProgress(
        job_id=job_id,
        scale=progress.scale,
        scales=progress.scales,
        iteration=progress.iteration,
        iterations=progress.iterations,
        work_done=min(max(progress.work_done, 0.0), 1.0),
        losses=losses,
        elapsed=max(progress.elapsed, 0.0),
        eta=eta if eta is not None and eta >= 0 else None,
        peak_memory_bytes=progress.peak_memory_bytes,
        preview=preview,
        tile=progress.tile,
        tiles=progress.tiles,
        frame=progress.frame,
        frames=progress.frames,
    )


def mask_arrays(masks: tuple[RawImage | None, ...]) -> list[np.ndarray | None] | None:
    """A job's masks as the engine takes them: None for none, else an H x W array or None
    per style. Copies, a byte a pixel: a view of the received bytes would be read-only, and
    torch warns about making a tensor of one."""
    if not masks:
        return None
    return [
        None
        if mask is None
        else np.frombuffer(mask.data, np.uint8).reshape(mask.height, mask.width).copy()
        for mask in masks
    ]


def source_mask_mismatch(
    masks: tuple[RawImage | None, ...], styles: list[np.ndarray]
) -> str | None:
    """What is wrong with the first source mask whose size is not its decoded style image's,
    or None. Only here can it be checked: the wire carries the styles encoded."""
    # `masks` is () or one per style (Submit checked).
    for index, (mask, style) in enumerate(zip(masks, styles, strict=False), start=1):
        height, width = style.shape[:2]
        if mask is not None and (mask.width, mask.height) != (width, height):
            return (
                f"style source mask {index} is {mask.width}x{mask.height}; style image {index} "
                f"is {width}x{height}"
            )
    return None


class JobRunner:
    """Receives jobs until told to stop (or the broker is gone), runs each on the engine."""

    def __init__(self, engine: StyleEngine, conn: Connection, config: WorkerConfig) -> None:
        self.engine, self.conn, self.config = engine, conn, config
        self.styles = StyleCache()
        self.stopping = False

    def serve(self) -> None:
        while not self.stopping:
            try:
                message = self.conn.recv()
                if isinstance(message, StopWorker):
                    return
                if isinstance(message, RunJob):
                    self.conn.send(self.run(message))
                    release_free_heap()
                # A CancelJob for a job that has already ended: nothing to do.
            except _BROKER_GONE:
                # Killed, or crashed: nobody is left to run jobs for. Exit, do not linger.
                log.warning("the broker has gone: exiting")
                return

    def run(self, job: RunJob) -> JobDone | JobFailed:
        """Run the job; out of memory, free what the failed attempt held and retry at smaller
        processing sizes (`retry_size`; the result keeps the content's size: the engine
        resizes it back). The engine has already tried a shorter L-BFGS history where that
        could help (on the scale that ran out, or before starting on a CPU): the smaller sizes
        keep it."""
        watch = CancelWatch(self.conn, job.job_id, ignore=self.config.faults.ignore_cancel)
        check = self._check(watch)
        size = processing_long_side(job.content.width, job.content.height, job.params.size)
        # Not under VGG's minimum: a content too small for it is then refused by the engine
        # in its own words ("content image is 1x1..."), not as a size the client never gave.
        size = max(size, MIN_SIDE)
        history: int | None = None  # None: the job's own
        warnings: list[str] = []

        def warn(message: str) -> None:
            warnings.append(message)
            log.warning("job %s: %s", job.job_id, message)

        fitting_tried = False  # the size the engine reckoned would fit: tried once at most
        while True:
            try:
                outcome = self._attempt(job, size, history, check, warn)
                break
            except DeviceMemoryError as error:
                fitting = None if fitting_tried else error.fitting_side
            # Here, outside the except block whose frames held the failed attempt's tensors.
            free_unused_memory(self.engine.device)
            smaller = retry_size(size, self.config.oom_min_size, fitting)
            fitting_tried = fitting_tried or fitting is not None
            if smaller is None or watch.cancelled:
                users = "use the GPU" if self.engine.device.type == "cuda" else "use memory"
                outcome = JobFailed(
                    job.job_id,
                    ErrorCode.OUT_OF_MEMORY,
                    (
                        f"out of memory on {self.engine.device} at {size} px (retries at smaller "
                        f"sizes stop at {self.config.oom_min_size} px): close other programs that "
                        f"{users}, or try a smaller size or a smaller image"
                    ),
                )
                break
            # (The job's parameters convert: it would have failed before running otherwise.)
            history = shorter_lbfgs_history(to_style_params(job.params)) or history
            warn(f"out of memory at {size} px: retried at {smaller} px")
            size = smaller
        self.stopping = watch.stop_after
        if isinstance(outcome, JobDone) and warnings:
            outcome = replace(outcome, warnings=tuple(warnings))
        return outcome

    def _check(self, watch: CancelWatch) -> Callable[[], bool]:
        """The job's `should_cancel`: the cancel watch, slowed by the injected fault slow_steps,
        which oom_at_step turns into an out-of-memory error in the job's first oom_attempts
        attempts."""
        faults = self.config.faults
        check: Callable[[], bool] = watch
        if faults.slow_steps:
            check = sleep_first(check, faults.slow_steps)
        if faults.oom_at_step is None:
            return check
        return fail_at_step(check, faults.oom_at_step, faults.oom_attempts)

    def _attempt(
        self,
        job: RunJob,
        size: int,
        history: int | None,
        check: Callable[[], bool],
        warn: Callable[[str], None],
    ) -> JobDone | JobFailed:
        """One run of the job at `size`; a bad input or a bug becomes a JobFailed, running out
        of memory a DeviceMemoryError."""
        try:
            params = replace(to_style_params(job.params), size=size)
            if history is not None:
                params = replace(params, lbfgs_history=history)
            return self._stylize(job, params, check, warn)
        except InvalidInputError as error:
            return JobFailed(job.job_id, ErrorCode.INVALID_PARAM, str(error))
        except DeviceMemoryError:
            raise  # for `run` to retry smaller
        except StyleTransferError as error:
            return JobFailed(job.job_id, ErrorCode.INTERNAL, str(error))
        except _BROKER_GONE:
            raise  # a progress report found the pipe closed: not the job's fault
        except Exception as error:  # a bug must end the job, not the warm process
            log.exception("job %s failed", job.job_id)
            return JobFailed(
                job.job_id, ErrorCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"
            )

    def _decode_styles(self, job: RunJob) -> list[np.ndarray] | JobFailed:
        try:
            return [
                self.styles.get(data, f"style image {index}")
                for index, data in enumerate(job.styles, start=1)
            ]
        except InvalidInputError as error:
            return JobFailed(job.job_id, ErrorCode.INVALID_IMAGE, str(error))

    def _stylize(
        self,
        job: RunJob,
        params: StyleParams,
        should_cancel: Callable[[], bool],
        on_warning: Callable[[str], None],
    ) -> JobDone | JobFailed:
        """The job's images (a sequence's frames, in order), or why it cannot run."""
        hits_before = self.styles.hits
        styles = self._decode_styles(job)
        if isinstance(styles, JobFailed):
            return styles
        mismatch = source_mask_mismatch(job.style_source_masks, styles)
        if mismatch is not None:
            return JobFailed(job.job_id, ErrorCode.INVALID_IMAGE, mismatch)
        content = rgba_array(job.content)
        limit = RateLimit(self.config.progress_interval)
        latest: list[Progress] = []

        def report(progress: Progress) -> None:
            latest[:] = [progress]
            last = progress.scale == progress.scales and progress.iteration == progress.iterations
            if limit.allow(force=last or progress.preview is not None):
                self.conn.send(progress_event(job.job_id, progress))

        def send_live(_steps: int, image: np.ndarray) -> None:
            # With the latest report's figures: the engine hands the snapshot over before it
            # reports its step.
            event = progress_event(job.job_id, replace(latest[0], preview=None))
            self.conn.send(replace(event, live_image=raw_rgba(image)))

        def send_frame(index: int, image: np.ndarray) -> None:
            # After the frame's last step, which `latest` reported.
            event = progress_event(job.job_id, replace(latest[0], preview=None))
            self.conn.send(replace(event, frame_image=raw_rgba(image)))

        if job.sequence:
            frames = stylize_frames(
                self.engine,
                [content, *(rgba_array(frame) for frame in job.sequence)],
                styles,
                params,
                on_progress=report,
                should_cancel=should_cancel,
                on_frame=send_frame,
                on_warning=on_warning,
            )
            images = frames.images if frames.partial is None else [*frames.images, frames.partial]
            cancelled, steps, elapsed = frames.cancelled, sum(frames.steps), frames.elapsed
            peak, target_hits = frames.peak_memory_bytes, frames.target_cache_hits
        else:
            result = self.engine.stylize(
                content,
                styles,
                params,
                style_masks=mask_arrays(job.style_masks),
                style_source_masks=mask_arrays(job.style_source_masks),
                on_progress=report,
                should_cancel=should_cancel,
                on_warning=on_warning,
                on_snapshot=None if params.live_interval is None else send_live,
            )
            images = [result.image]
            cancelled, steps, elapsed = result.cancelled, result.steps, result.elapsed
            peak, target_hits = result.peak_memory_bytes, result.target_cache_hits
        raw = [raw_rgba(image) for image in images]
        return JobDone(
            job_id=job.job_id,
            image=raw[0],
            cancelled=cancelled,
            steps=steps,
            elapsed=elapsed,
            peak_memory_bytes=peak,
            memory_bytes=_memory_in_use(self.engine.device),
            style_cache_hits=self.styles.hits - hits_before,
            target_cache_hits=target_hits,
            sequence=tuple(raw[1:]),
        )


def rgba_array(image: RawImage) -> np.ndarray:
    """A received RGBA image as the engine takes it (a read-only view: the engine copies)."""
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 4)


def raw_rgba(image: np.ndarray) -> RawImage:
    """An engine's RGBA result as the pipe carries it."""
    image = np.ascontiguousarray(image)
    return RawImage(image.tobytes(), image.shape[1], image.shape[0], 4)
