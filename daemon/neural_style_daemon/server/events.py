"""What the broker and the worker process say to each other over their pipe: frozen
dataclasses, grouped by direction. The pipe is private to the two processes (pickling is safe
here, unlike on the wire); images travel as the protocol's RawImage."""

from __future__ import annotations

from dataclasses import dataclass, field

from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.images import RawImage
from neural_style_protocol.params import JobParams

from .faults import Faults


@dataclass(frozen=True)
class WorkerConfig:
    """How the worker process sets itself up."""

    weights: str = "imagenet"
    device: str = "auto"
    log_level: int = 20  # logging.INFO
    log_file: str | None = None  # besides stderr
    progress_interval: float = 0.1  # seconds between progress events (the last always goes)
    oom_min_size: int = 256  # out-of-memory retries shrink the processing size down to this
    max_memory_bytes: int | None = None  # what one job may use (--max-memory); None: what is free
    faults: Faults = field(default_factory=Faults)  # injected by tests only


# ---- broker -> worker ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunJob:
    job_id: str
    content: RawImage  # RGBA
    styles: tuple[bytes, ...]  # encoded files, decoded by the worker
    params: JobParams
    # As Submit has them: () or one per style, each None or a 1-channel image (the content's
    # size; for a source mask, its style image's, which the worker checks once decoded).
    style_masks: tuple[RawImage | None, ...] = ()
    style_source_masks: tuple[RawImage | None, ...] = ()
    sequence: tuple[RawImage, ...] = ()  # the frames after `content`, as Submit has them


@dataclass(frozen=True)
class CancelJob:
    """Stop the named job after its current step (ignored if another job runs by then)."""

    job_id: str


@dataclass(frozen=True)
class StopWorker:
    """Finish (cancelling a running job) and exit."""


# ---- worker -> broker ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerReady:
    device: str  # e.g. "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"
    pid: int
    memory_bytes: int | None = None


@dataclass(frozen=True)
class WorkerStartFailed:
    """The model could not be loaded; the process exits after sending this."""

    message: str


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    scale: int
    scales: int
    iteration: int
    iterations: int
    work_done: float
    losses: dict[str, float]  # finite values only
    elapsed: float
    eta: float | None
    peak_memory_bytes: int
    preview: RawImage | None = None  # RGB
    tile: int = 0  # the tiles done of a tiled step in progress, and their count; 0 otherwise
    tiles: int = 0
    frame: int = 0  # in a sequence, the 1-based frame and the frame count; 0 otherwise
    frames: int = 0
    frame_image: RawImage | None = None  # RGBA: frame `frame`, finished (once per frame)
    live_image: RawImage | None = None  # RGBA: the result so far (params.live_interval)


@dataclass(frozen=True)
class JobDone:
    """A finished job, or a cancelled one with its partial image."""

    job_id: str
    image: RawImage  # RGBA, the content's size, its alpha untouched
    cancelled: bool
    steps: int
    elapsed: float
    peak_memory_bytes: int
    memory_bytes: int | None = None  # GPU memory still allocated after the job (model, caches)
    style_cache_hits: int = 0  # decoded style images reused
    target_cache_hits: int = 0  # the engine's style Grams and content features reused
    warnings: tuple[str, ...] = ()  # e.g. an out-of-memory retry at a smaller size
    # A sequence's later frames (a cancelled one's last partial, as `image` is for a single
    # image); `image` is its first.
    sequence: tuple[RawImage, ...] = ()


@dataclass(frozen=True)
class JobFailed:
    job_id: str
    code: ErrorCode
    message: str


FromWorker = WorkerReady | WorkerStartFailed | JobProgress | JobDone | JobFailed
