"""The messages, as frozen dataclasses grouped by direction. Each checks its own invariants when
built (on either side), so a message that exists is a valid one; the limits a daemon sets
(sizes, counts) are checked while deserializing (see codec.py)."""

from __future__ import annotations

import re
import uuid
from dataclasses import Field, dataclass, field
from enum import Enum
from typing import ClassVar

from ._fields import BIG_INT as _BIG
from ._fields import check_bool, check_float, check_int, check_str
from .errors import ErrorCode, ProtocolError
from .images import BytesLike, RawImage
from .params import JobParams

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TEXT = 4096  # error messages, warnings, version and device names
MAX_LOSSES = 32
_INF = float("inf")
_MALFORMED = ErrorCode.MALFORMED
# Field metadata: the encoder leaves such a field out while it is empty (see codec.py).
OMIT_WHEN_EMPTY = {"omit_when_empty": True}


def omitted_when_empty(item: Field[object]) -> bool:
    """Whether the encoder leaves the field `item` out of the wire while it is empty."""
    return bool(item.metadata.get("omit_when_empty"))


class MessageType(str, Enum):
    """The `type` in every header."""

    PING = "ping"
    PONG = "pong"
    SUBMIT = "submit"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"
    CANCEL = "cancel"
    STATUS = "status"
    STATUS_REPLY = "status_reply"
    SHUTDOWN = "shutdown"


class WorkerState(str, Enum):
    """What the GPU worker process is doing, as reported by `status`."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    RESTARTING = "restarting"
    FAILED = "failed"  # gave up after repeated failures
    STOPPED = "stopped"


def new_job_id() -> str:
    """A fresh client-chosen job id (resubmitting the same id is idempotent)."""
    return uuid.uuid4().hex


def check_job_id(value: object, name: str = "job_id") -> str:
    """A job id: 1 to 64 characters of [A-Za-z0-9_.-]."""
    return check_str(value, name, ErrorCode.INVALID_PARAM, max_len=64, pattern=JOB_ID_PATTERN)


class Message:
    """Base of every message; `type` names it in the header."""

    type: ClassVar[MessageType]


class ClientMessage(Message):
    """Sent by a client (plug-in, command line) to the daemon."""


class DaemonMessage(Message):
    """Sent by the daemon to a client."""


# ---- client -> daemon ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ping(ClientMessage):
    """Heartbeat; answered by Pong at once, even while a job runs."""

    type: ClassVar[MessageType] = MessageType.PING


@dataclass(frozen=True)
class Submit(ClientMessage):
    """A job: raw RGBA content, encoded style images (PNG, JPEG...; the daemon decodes them),
    and optionally a region mask per style (Gatys et al. 2017's spatial control).

    `style_masks`: empty (no masks), or one per style, each None (that style applies
    everywhere) or a grey RawImage of the content's size, 255 where the style belongs.
    `style_source_masks`: empty, or one per style, each None (learn from the whole style
    image) or a grey RawImage of that style image's size (which only the daemon, having
    decoded the style, can check). A list of Nones counts as empty.
    """

    type: ClassVar[MessageType] = MessageType.SUBMIT
    job_id: str
    content: RawImage
    styles: tuple[BytesLike, ...] = field(repr=False)  # encoded files, passed on undecoded
    params: JobParams = field(default_factory=JobParams)
    # Left off the wire when empty, so that a job without masks reads as before to a daemon
    # that predates them.
    style_masks: tuple[RawImage | None, ...] = field(
        default=(), repr=False, metadata=OMIT_WHEN_EMPTY
    )
    style_source_masks: tuple[RawImage | None, ...] = field(
        default=(), repr=False, metadata=OMIT_WHEN_EMPTY
    )
    # The frames of an animation after `content` (its first), in order, each RGBA of the
    # content's size: the job stylises them all as one sequence without flicker (Ruder et al.
    # 2016). Empty for a single image.
    sequence: tuple[RawImage, ...] = field(default=(), repr=False, metadata=OMIT_WHEN_EMPTY)

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        if not isinstance(self.content, RawImage) or self.content.channels != 4:
            raise ProtocolError(ErrorCode.INVALID_IMAGE, "the content must be an RGBA RawImage")
        styles = tuple(self.styles)
        if not styles:
            raise ProtocolError(ErrorCode.INVALID_PARAM, "a job needs at least one style image")
        for style in styles:
            if not isinstance(style, (bytes, bytearray, memoryview)) or len(style) == 0:
                raise ProtocolError(ErrorCode.INVALID_IMAGE, "a style image is empty")
        object.__setattr__(self, "styles", styles)
        if not isinstance(self.params, JobParams):
            raise ProtocolError(ErrorCode.INVALID_PARAM, "params must be JobParams")
        weights = self.params.style_weights
        if weights is not None and len(weights) != len(styles):
            raise ProtocolError(
                ErrorCode.INVALID_PARAM,
                f"{len(weights)} style weights for {len(styles)} style images",
            )
        size = (self.content.width, self.content.height)
        masks = _check_masks(self.style_masks, "style_masks", len(styles), size)
        object.__setattr__(self, "style_masks", masks)
        sources = _check_masks(self.style_source_masks, "style_source_masks", len(styles), None)
        object.__setattr__(self, "style_source_masks", sources)
        sequence = _check_sequence(self.sequence, size)
        object.__setattr__(self, "sequence", sequence)
        if sequence and (masks or sources):
            raise ProtocolError(
                ErrorCode.INVALID_PARAM, "style masks are for a single image, not a sequence"
            )


@dataclass(frozen=True)
class Cancel(ClientMessage):
    """Cancel a queued or running job (running: the partial result comes back, cancelled)."""

    type: ClassVar[MessageType] = MessageType.CANCEL
    job_id: str

    def __post_init__(self) -> None:
        check_job_id(self.job_id)


@dataclass(frozen=True)
class StatusRequest(ClientMessage):
    """Ask for a StatusReply."""

    type: ClassVar[MessageType] = MessageType.STATUS


@dataclass(frozen=True)
class Shutdown(ClientMessage):
    """Ask the daemon to cancel its jobs, tell its clients and exit."""

    type: ClassVar[MessageType] = MessageType.SHUTDOWN


# ---- daemon -> client ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pong(DaemonMessage):
    """The answer to Ping."""

    type: ClassVar[MessageType] = MessageType.PONG


@dataclass(frozen=True)
class Accepted(DaemonMessage):
    """A job was queued; position 0 means it runs now."""

    type: ClassVar[MessageType] = MessageType.ACCEPTED
    job_id: str
    queue_position: int

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        check_int(self.queue_position, "queue_position", 0, _BIG, _MALFORMED)


@dataclass(frozen=True)
class Progress(DaemonMessage):
    """One optimisation step of a running job; `seq` counts a job's progress messages."""

    type: ClassVar[MessageType] = MessageType.PROGRESS
    job_id: str
    seq: int
    scale: int  # 1-based pyramid scale
    scales: int
    iteration: int  # within this scale; 0 before the first step
    iterations: int
    work_done: float  # 0..1, weighted by pixels
    losses: dict[str, float]
    elapsed: float  # seconds since the job started
    eta: float | None = None  # seconds left; None while unknown
    preview: RawImage | None = None  # a small RGB image, now and then
    # In a tiled step, the tiles done of step `iteration` and their count (each step visits
    # every tile twice); 0 otherwise.
    tile: int = 0
    tiles: int = 0
    # In a sequence, the 1-based frame being worked on and the frame count, and then
    # `work_done`, `elapsed` and `eta` are the whole sequence's; 0 otherwise.
    frame: int = 0
    frames: int = 0
    # Once per frame of a sequence, in the progress that ends it: frame `frame`'s RGBA image,
    # so that a client can keep each frame as soon as it is done.
    frame_image: RawImage | None = field(default=None, repr=False, metadata=OMIT_WHEN_EMPTY)
    # Now and then, where the job asked for them (params.live_interval): the result so far,
    # RGBA at the content's size, as the Result would hold it were the job to end here.
    live_image: RawImage | None = field(default=None, repr=False, metadata=OMIT_WHEN_EMPTY)

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        check_int(self.seq, "seq", 0, _BIG, _MALFORMED)
        check_int(self.tiles, "tiles", 0, _BIG, _MALFORMED)
        check_int(self.tile, "tile", 0, self.tiles, _MALFORMED)
        check_int(self.frames, "frames", 0, _BIG, _MALFORMED)
        check_int(self.frame, "frame", 0 if self.frames == 0 else 1, self.frames, _MALFORMED)
        check_int(self.scales, "scales", 1, 1000, _MALFORMED)
        check_int(self.scale, "scale", 1, self.scales, _MALFORMED)
        check_int(self.iterations, "iterations", 0, _BIG, _MALFORMED)
        check_int(self.iteration, "iteration", 0, self.iterations, _MALFORMED)
        object.__setattr__(
            self, "work_done", check_float(self.work_done, "work_done", 0.0, 1.0, _MALFORMED)
        )
        object.__setattr__(
            self, "elapsed", check_float(self.elapsed, "elapsed", 0.0, _INF, _MALFORMED)
        )
        if self.eta is not None:
            object.__setattr__(self, "eta", check_float(self.eta, "eta", 0.0, _INF, _MALFORMED))
        object.__setattr__(self, "losses", _check_losses(self.losses))
        if self.preview is not None and (
            not isinstance(self.preview, RawImage) or self.preview.channels != 3
        ):
            raise ProtocolError(ErrorCode.INVALID_IMAGE, "a preview must be an RGB RawImage")
        if self.frame_image is not None and (
            not isinstance(self.frame_image, RawImage)
            or self.frame_image.channels != 4
            or self.frame == 0
        ):
            raise ProtocolError(
                ErrorCode.INVALID_IMAGE, "a frame image must be an RGBA RawImage of a sequence"
            )
        if self.live_image is not None and (
            not isinstance(self.live_image, RawImage) or self.live_image.channels != 4
        ):
            raise ProtocolError(ErrorCode.INVALID_IMAGE, "a live image must be an RGBA RawImage")


@dataclass(frozen=True)
class JobStats:
    """What a finished job cost."""

    steps: int
    elapsed: float  # seconds
    peak_memory_bytes: int
    target_cache_hits: int = 0  # loss targets reused from earlier jobs (warm repeats)

    def __post_init__(self) -> None:
        check_int(self.steps, "stats.steps", 0, _BIG, _MALFORMED)
        check_int(self.target_cache_hits, "stats.target_cache_hits", 0, _BIG, _MALFORMED)
        object.__setattr__(
            self, "elapsed", check_float(self.elapsed, "stats.elapsed", 0.0, _INF, _MALFORMED)
        )
        check_int(self.peak_memory_bytes, "stats.peak_memory_bytes", 0, _BIG, _MALFORMED)


@dataclass(frozen=True)
class Result(DaemonMessage):
    """A finished (or cancelled, then partial) job's RGBA image; for a sequence, its first
    frame's, and the later frames' in `sequence`.

    A cancelled job's last image is partial: its only one for a single image; for a sequence,
    the frame that was being worked on, after the frames finished before it."""

    type: ClassVar[MessageType] = MessageType.RESULT
    job_id: str
    image: RawImage
    cancelled: bool
    stats: JobStats
    warnings: tuple[str, ...] = ()  # e.g. "out of memory: retried at 1024 px"
    sequence: tuple[RawImage, ...] = field(default=(), repr=False, metadata=OMIT_WHEN_EMPTY)

    @property
    def images(self) -> tuple[RawImage, ...]:
        """Every frame's image, in order (the one image of a single job)."""
        return (self.image, *self.sequence)

    def __post_init__(self) -> None:
        check_job_id(self.job_id)
        if not isinstance(self.image, RawImage) or self.image.channels != 4:
            raise ProtocolError(ErrorCode.INVALID_IMAGE, "a result must be an RGBA RawImage")
        size = (self.image.width, self.image.height)
        object.__setattr__(self, "sequence", _check_sequence(self.sequence, size))
        check_bool(self.cancelled, "cancelled", _MALFORMED)
        if not isinstance(self.stats, JobStats):
            raise ProtocolError(_MALFORMED, "stats must be JobStats")
        warnings = tuple(self.warnings)
        for warning in warnings:
            check_str(warning, "a warning", _MALFORMED, max_len=MAX_TEXT)
        object.__setattr__(self, "warnings", warnings)


@dataclass(frozen=True)
class Error(DaemonMessage):
    """A refused message or a failed job: a code to act on and a message for people."""

    type: ClassVar[MessageType] = MessageType.ERROR
    job_id: str | None
    code: ErrorCode
    message: str

    def __post_init__(self) -> None:
        if self.job_id is not None:
            check_job_id(self.job_id)
        codes = [code.value for code in ErrorCode]
        code = check_str(self.code, "code", _MALFORMED, max_len=64, choices=codes)
        object.__setattr__(self, "code", ErrorCode(code))
        check_str(self.message, "message", _MALFORMED, max_len=MAX_TEXT)

    @classmethod
    def from_exception(cls, error: ProtocolError) -> Error:
        """The reply to a refused, authenticated message."""
        return cls(error.job_id, error.code, error.message[:MAX_TEXT])


@dataclass(frozen=True)
class StatusReply(DaemonMessage):
    """The daemon's state, for `neural-style status` and the plug-in."""

    type: ClassVar[MessageType] = MessageType.STATUS_REPLY
    version: str
    device: str  # e.g. "cuda:0 (NVIDIA H100)" or "cpu"
    model_loaded: bool
    memory_bytes: int | None  # device memory in use; None where unknown
    queue_length: int
    queue_limit: int
    worker_state: WorkerState
    running: Progress | None = None  # the running job's latest progress

    def __post_init__(self) -> None:
        check_str(self.version, "version", _MALFORMED, max_len=MAX_TEXT)
        check_str(self.device, "device", _MALFORMED, max_len=MAX_TEXT)
        check_bool(self.model_loaded, "model_loaded", _MALFORMED)
        if self.memory_bytes is not None:
            check_int(self.memory_bytes, "memory_bytes", 0, _BIG, _MALFORMED)
        check_int(self.queue_length, "queue_length", 0, _BIG, _MALFORMED)
        check_int(self.queue_limit, "queue_limit", 0, _BIG, _MALFORMED)
        states = [state.value for state in WorkerState]
        state = check_str(self.worker_state, "worker_state", _MALFORMED, max_len=32, choices=states)
        object.__setattr__(self, "worker_state", WorkerState(state))
        if self.running is not None and not isinstance(self.running, Progress):
            raise ProtocolError(_MALFORMED, "running must be Progress or None")


def _check_losses(losses: object) -> dict[str, float]:
    """A small dict of named, finite losses (a copy, so the caller's dict can change)."""
    if not isinstance(losses, dict) or len(losses) > MAX_LOSSES:
        raise ProtocolError(_MALFORMED, f"losses must be an object of at most {MAX_LOSSES} numbers")
    return {
        check_str(name, "a loss name", _MALFORMED, max_len=64): check_float(
            value, f"losses.{name}", -_INF, _INF, _MALFORMED
        )
        for name, value in losses.items()
    }


def _check_masks(
    masks: object, name: str, styles: int, size: tuple[int, int] | None
) -> tuple[RawImage | None, ...]:
    """One grey mask (or None) per style, each `size` (width, height) where given; () for
    none at all. A mask's size is named in the message: the sender can see what is wrong."""
    if not isinstance(masks, (tuple, list)):
        raise ProtocolError(_MALFORMED, f"{name} must be a sequence of images or None")
    entries = tuple(masks)
    if all(mask is None for mask in entries):
        return ()
    if len(entries) != styles:
        raise ProtocolError(
            ErrorCode.INVALID_PARAM,
            f"{len(entries)} {name} for {styles} style images (one each, None for none)",
        )
    for index, mask in enumerate(entries):
        if mask is None:
            continue
        if not isinstance(mask, RawImage) or mask.channels != 1:
            raise ProtocolError(
                ErrorCode.INVALID_IMAGE, f"{name}[{index}] must be a grey (1-channel) RawImage"
            )
        if size is not None and (mask.width, mask.height) != size:
            raise ProtocolError(
                ErrorCode.INVALID_IMAGE,
                f"{name}[{index}] is {mask.width}x{mask.height}; the content is "
                f"{size[0]}x{size[1]}",
            )
    return entries


def _check_sequence(frames: object, size: tuple[int, int]) -> tuple[RawImage, ...]:
    """Frames after the first, each an RGBA RawImage of `size` (width, height), the first's."""
    if not isinstance(frames, (tuple, list)):
        raise ProtocolError(_MALFORMED, "sequence must be a sequence of images")
    entries = tuple(frames)
    for number, frame in enumerate(entries, start=2):
        if not isinstance(frame, RawImage) or frame.channels != 4:
            raise ProtocolError(ErrorCode.INVALID_IMAGE, f"frame {number} must be an RGBA RawImage")
        if (frame.width, frame.height) != size:
            raise ProtocolError(
                ErrorCode.INVALID_IMAGE,
                f"frame {number} is {frame.width}x{frame.height}, frame 1 is "
                f"{size[0]}x{size[1]}: every frame must have the same size",
            )
    return entries


CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (Ping, Submit, Cancel, StatusRequest, Shutdown)
DAEMON_MESSAGES: tuple[type[DaemonMessage], ...] = (
    Pong,
    Accepted,
    Progress,
    Result,
    Error,
    StatusReply,
)
MESSAGE_CLASSES: dict[MessageType, type[Message]] = {
    cls.type: cls for cls in CLIENT_MESSAGES + DAEMON_MESSAGES
}
