"""Messages to and from JSON bodies plus binary buffers. Images are referenced from the JSON by
buffer index ({"buffer": 0, "width": ..., "height": ...}); the channel count comes from the
schema (RGBA content and results, RGB previews, grey masks), never from the wire."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, is_dataclass
from enum import Enum

from ._fields import Reader, check_int
from .errors import ErrorCode, ProtocolError
from .images import BytesLike, RawImage
from .limits import Limits
from .messages import (
    Accepted,
    Cancel,
    Error,
    JobStats,
    Message,
    MessageType,
    Ping,
    Pong,
    Progress,
    Result,
    Shutdown,
    StatusReply,
    StatusRequest,
    Submit,
    omitted_when_empty,
)
from .params import JobParams


class BufferTable:
    """The message's buffers, each to be referenced exactly once."""

    def __init__(self, buffers: Sequence[BytesLike]) -> None:
        self._buffers = buffers
        self._taken: set[int] = set()

    def take(self, index: object, name: str) -> BytesLike:
        position = check_int(index, name, 0, max(len(self._buffers) - 1, 0), ErrorCode.MALFORMED)
        if position >= len(self._buffers) or position in self._taken:
            raise ProtocolError(
                ErrorCode.MALFORMED,
                f"{name} names buffer {position}, which is missing or already used",
            )
        self._taken.add(position)
        return self._buffers[position]

    def finish(self) -> None:
        unused = len(self._buffers) - len(self._taken)
        if unused:
            raise ProtocolError(ErrorCode.MALFORMED, f"{unused} buffer(s) not referenced")


# ---- encoding --------------------------------------------------------------------------------


def encode(message: Message) -> tuple[dict[str, object], list[BytesLike]]:
    """The JSON body and the buffers of a message. The body's keys are the dataclass field
    names: renaming a field changes the protocol."""
    buffers: list[BytesLike] = []
    body = _encode_value(message, buffers)
    assert isinstance(body, dict)  # every message is a dataclass
    return body, buffers


def _encode_value(value: object, buffers: list[BytesLike]) -> object:
    """Dataclasses become objects (images become buffer references), enums their values,
    tuples lists; everything else is already JSON."""
    if isinstance(value, RawImage):
        buffers.append(value.data)
        return {"buffer": len(buffers) - 1, "width": value.width, "height": value.height}
    if isinstance(value, JobParams):
        return value.to_wire()
    if isinstance(value, (bytes, bytearray, memoryview)):  # an encoded style image
        buffers.append(value)
        return {"buffer": len(buffers) - 1}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [_encode_value(item, buffers) for item in value]
    if isinstance(value, dict):
        return {key: _encode_value(item, buffers) for key, item in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _encode_value(getattr(value, f.name), buffers)
            for f in fields(value)
            if not (omitted_when_empty(f) and not getattr(value, f.name))
        }
    return value


# ---- decoding --------------------------------------------------------------------------------


class _Context:
    """What every decoder needs: the buffers and the limits."""

    def __init__(self, buffers: BufferTable, limits: Limits) -> None:
        self.buffers = buffers
        self.limits = limits


def decode(
    message_type: MessageType, body: object, buffers: Sequence[BytesLike], limits: Limits
) -> Message:
    """The message of `message_type` from its JSON body; every buffer must be used once."""
    reader = Reader(body, message_type.value)
    table = BufferTable(buffers)
    message = _DECODERS[message_type](reader, _Context(table, limits))
    reader.done()
    table.finish()
    return message


def _read_image(reader: Reader, ctx: _Context, channels: int) -> RawImage:
    code = ErrorCode.INVALID_IMAGE
    width = check_int(reader.take("width"), reader.name("width"), 1, ctx.limits.max_side, code)
    height = check_int(reader.take("height"), reader.name("height"), 1, ctx.limits.max_side, code)
    if width * height > ctx.limits.max_pixels:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{reader.where}: {width}x{height} is over {ctx.limits.max_pixels} pixels",
        )
    data = ctx.buffers.take(reader.take("buffer"), reader.name("buffer"))
    reader.done()
    return RawImage(data, width, height, channels)


def _optional_image(reader: Reader, key: str, ctx: _Context, channels: int) -> RawImage | None:
    if reader.take(key) is None:
        return None
    return _read_image(reader.take_reader(key), ctx, channels)


def _omittable_image(reader: Reader, key: str, ctx: _Context, channels: int) -> RawImage | None:
    """An image the encoder leaves out while it is None (OMIT_WHEN_EMPTY)."""
    return _optional_image(reader, key, ctx, channels) if reader.has(key) else None


def _decode_submit(reader: Reader, ctx: _Context) -> Submit:
    job_id = reader.take("job_id")
    refs = reader.take("styles")
    if isinstance(refs, list) and len(refs) > ctx.limits.max_styles:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{len(refs)} style images, over the limit of {ctx.limits.max_styles}",
        )
    styles = reader.take_list("styles", max_len=ctx.limits.max_styles, min_len=1)
    style_bytes = []
    for index, ref in enumerate(styles):
        style_reader = Reader(ref, f"submit.styles[{index}]")
        buffer = ctx.buffers.take(style_reader.take("buffer"), style_reader.name("buffer"))
        style_bytes.append(buffer)
        style_reader.done()
    params = JobParams.from_wire(reader.take("params"))
    _check_params_against(params, ctx.limits)
    content = _read_image(reader.take_reader("content"), ctx, 4)
    return Submit(
        job_id,
        content,
        tuple(style_bytes),
        params,
        _read_masks(reader, "style_masks", ctx),
        _read_masks(reader, "style_source_masks", ctx),
        _read_sequence(reader, ctx),
    )


def _read_sequence(reader: Reader, ctx: _Context) -> tuple[RawImage, ...]:
    """The RGBA frames after the first; an absent key (a single image) is ()."""
    if not reader.has("sequence"):
        return ()
    later = ctx.limits.max_sequence - 1
    refs = reader.take("sequence")
    if isinstance(refs, list) and len(refs) > later:
        raise ProtocolError(
            ErrorCode.TOO_LARGE,
            f"{len(refs) + 1} frames, over the limit of {ctx.limits.max_sequence}",
        )
    return tuple(
        _read_image(Reader(ref, f"{reader.name('sequence')}[{index}]"), ctx, 4)
        for index, ref in enumerate(reader.take_list("sequence", max_len=later))
    )


def _read_masks(reader: Reader, key: str, ctx: _Context) -> tuple[RawImage | None, ...]:
    """A list of grey masks or nulls; an absent key (a client that sends none) is ()."""
    if not reader.has(key):
        return ()
    refs = reader.take_list(key, max_len=ctx.limits.max_styles)
    return tuple(
        None if ref is None else _read_image(Reader(ref, f"{reader.name(key)}[{index}]"), ctx, 1)
        for index, ref in enumerate(refs)
    )


def _check_params_against(params: JobParams, limits: Limits) -> None:
    """The daemon's own caps, which may be lower than the schema's ranges."""
    if params.iterations is not None and params.iterations > limits.max_iterations:
        raise ProtocolError(
            ErrorCode.INVALID_PARAM,
            f"params.iterations {params.iterations} is over the limit of {limits.max_iterations}",
        )
    if params.size is not None and params.size > limits.max_side:
        raise ProtocolError(
            ErrorCode.INVALID_PARAM,
            f"params.size {params.size} is over the limit of {limits.max_side}",
        )


def _decode_progress(reader: Reader, ctx: _Context) -> Progress:
    return Progress(
        job_id=reader.take("job_id"),
        seq=reader.take("seq"),
        scale=reader.take("scale"),
        scales=reader.take("scales"),
        iteration=reader.take("iteration"),
        iterations=reader.take("iterations"),
        work_done=reader.take("work_done"),
        losses=reader.take("losses"),
        elapsed=reader.take("elapsed"),
        eta=reader.take("eta"),
        preview=_optional_image(reader, "preview", ctx, 3),
        tile=reader.take("tile", 0),
        tiles=reader.take("tiles", 0),
        frame=reader.take("frame", 0),
        frames=reader.take("frames", 0),
        frame_image=_omittable_image(reader, "frame_image", ctx, 4),
        live_image=_omittable_image(reader, "live_image", ctx, 4),
    )


def _decode_result(reader: Reader, ctx: _Context) -> Result:
    stats = reader.take_reader("stats")
    job_stats = JobStats(
        stats.take("steps"),
        stats.take("elapsed"),
        stats.take("peak_memory_bytes"),
        stats.take("target_cache_hits", 0),
    )
    stats.done()
    warnings = reader.take_list("warnings", max_len=64)
    return Result(
        reader.take("job_id"),
        _read_image(reader.take_reader("image"), ctx, 4),
        reader.take("cancelled"),
        job_stats,
        tuple(warnings),
        _read_sequence(reader, ctx),
    )


def _decode_status_reply(reader: Reader, ctx: _Context) -> StatusReply:
    running = None
    if reader.take("running") is not None:
        running_reader = reader.take_reader("running")
        running = _decode_progress(running_reader, ctx)
        running_reader.done()
    values = {
        key: reader.take(key)
        for key in (
            "version",
            "device",
            "model_loaded",
            "memory_bytes",
            "queue_length",
            "queue_limit",
            "worker_state",
        )
    }
    return StatusReply(running=running, **values)


def _simple(cls: Callable[..., Message], *keys: str) -> Callable[[Reader, _Context], Message]:
    """A decoder for a message whose fields are plain JSON values."""

    def decoder(reader: Reader, ctx: _Context) -> Message:
        return cls(**{key: reader.take(key) for key in keys})

    return decoder


_DECODERS: dict[MessageType, Callable[[Reader, _Context], Message]] = {
    MessageType.PING: _simple(Ping),
    MessageType.PONG: _simple(Pong),
    MessageType.STATUS: _simple(StatusRequest),
    MessageType.SHUTDOWN: _simple(Shutdown),
    MessageType.CANCEL: _simple(Cancel, "job_id"),
    MessageType.ACCEPTED: _simple(Accepted, "job_id", "queue_position"),
    MessageType.ERROR: _simple(Error, "job_id", "code", "message"),
    MessageType.SUBMIT: _decode_submit,
    MessageType.PROGRESS: _decode_progress,
    MessageType.RESULT: _decode_result,
    MessageType.STATUS_REPLY: _decode_status_reply,
}
