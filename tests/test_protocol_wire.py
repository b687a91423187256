"""The wire format without sockets: round trips, signatures, replays, limits and strict JSON."""

from __future__ import annotations

import json
import time

import pytest

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import Limits
from neural_style_protocol.messages import (
    Accepted,
    Cancel,
    ClientMessage,
    DaemonMessage,
    Error,
    JobStats,
    Message,
    Ping,
    Pong,
    Progress,
    Result,
    Shutdown,
    StatusReply,
    StatusRequest,
    Submit,
    WorkerState,
)
from neural_style_protocol.params import JobParams, Preset
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import (
    DELIMITER,
    deserialize,
    deserialize_envelope,
    serialize,
    sign,
    split_routing,
)

KEY = bytes(range(32))


def rgba(width: int, height: int) -> RawImage:
    size = width * height * 4
    return RawImage(bytes(range(256)) * (size // 256) + bytes(size % 256), width, height)


def progress(preview: bool = True) -> Progress:
    return Progress(
        "job-1",
        seq=3,
        scale=1,
        scales=2,
        iteration=5,
        iterations=100,
        work_done=0.25,
        losses={"content": 1.5, "style": 20.0, "tv": 0.1},
        elapsed=2.5,
        eta=7.5,
        preview=RawImage(b"\x07" * 2 * 3 * 3, 2, 3, channels=3) if preview else None,
        tile=3,
        tiles=8,
    )


def submit(styles: int = 2, **params: object) -> Submit:
    return Submit(
        "job-1",
        rgba(4, 3),
        tuple(b"\x89PNG style %d" % i for i in range(styles)),
        JobParams(**params),
    )  # type: ignore[arg-type]


EXAMPLES: list[Message] = [
    Ping(),
    Submit(
        "a.B_c-9",
        rgba(8, 4),
        (b"\xff\xd8jpeg",),
        JobParams(preset=Preset.BEST, size=512, iterations=50, seed=None, style_weight=1e5),
    ),
    submit(3, style_weights=(1.0, 2.0, 0.5)),
    Cancel("job-1"),
    StatusRequest(),
    Shutdown(),
    Pong(),
    Accepted("job-1", 2),
    progress(),
    progress(preview=False),
    Result(
        "job-1",
        rgba(5, 7),
        cancelled=True,
        stats=JobStats(120, 3.25, 1 << 30),
        warnings=("out of memory at 2048 px: retried at 1448 px",),
    ),
    Error("job-1", ErrorCode.BUSY, "the queue is full (8 jobs)"),
    Error(None, ErrorCode.MALFORMED, "no"),
    StatusReply("0.1.0", "cuda:0", True, 123456, 1, 8, WorkerState.BUSY, running=progress()),
    StatusReply("0.1.0", "cpu", False, None, 0, 8, WorkerState.IDLE),
]


def roundtrip(message: Message, **kwargs: object) -> Message:
    return deserialize(serialize(message, KEY), KEY, ReplayGuard(), **kwargs)  # type: ignore[arg-type]


def refusal(frames: list, **kwargs: object) -> ProtocolError:
    """The ProtocolError that deserializing `frames` raises."""
    guard = kwargs.pop("replay", None) or ReplayGuard()
    key = kwargs.pop("key", KEY)
    with pytest.raises(ProtocolError) as caught:
        deserialize(frames, key, guard, **kwargs)  # type: ignore[arg-type]
    return caught.value


def resigned(
    frames: list, header: object = None, content: object = None, raw_content: bytes | None = None
) -> list:
    """Frames with a replaced header or content, signed again with the right key: they pass the
    signature check, so what follows is refused by validation (from an authenticated peer)."""
    header_bytes = frames[2] if header is None else json.dumps(header).encode()
    content_bytes = frames[3] if content is None else json.dumps(content).encode()
    if raw_content is not None:
        content_bytes = raw_content
    return [
        DELIMITER,
        sign(KEY, header_bytes, content_bytes),
        header_bytes,
        content_bytes,
        *frames[4:],
    ]


def edit_body(frames: list, edit) -> list:
    """Frames whose content body went through `edit` (a function changing the dict in place)."""
    content = json.loads(frames[3])
    edit(content["body"])
    return resigned(frames, content=content)


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    assert roundtrip(message) == message


def test_images_travel_as_their_own_frames_without_copies() -> None:
    message = submit(2)
    frames = serialize(message, KEY)
    assert len(frames) == 4 + 3
    assert frames[4] is message.content.data
    assert frames[5:] == list(message.styles)
    assert b"buffer" in frames[3] and message.content.data not in frames[3]


def test_a_memoryview_of_pixels_is_sent_without_a_copy() -> None:
    pixels = bytearray(range(48))
    view = memoryview(pixels).cast("B", (3, 4, 4))  # rows, columns, channels, like an array
    message = Submit("view", RawImage(view, 4, 3), (b"style",))
    frames = serialize(message, KEY)
    assert frames[4].obj is pixels
    assert roundtrip(message) == message


def test_a_strided_memoryview_is_refused() -> None:
    with pytest.raises(ProtocolError) as caught:
        RawImage(memoryview(bytes(96))[::2], 4, 3)
    assert caught.value.code is ErrorCode.INVALID_IMAGE


def test_the_envelope_names_the_request_a_reply_answers() -> None:
    request = deserialize_envelope(serialize(Ping(), KEY), KEY, ReplayGuard())
    reply = serialize(Pong(), KEY, parent_id=request.header.msg_id)
    envelope = deserialize_envelope(reply, KEY, ReplayGuard())
    assert envelope.header.parent_id == request.header.msg_id
    assert envelope.header.msg_id != request.header.msg_id


def test_routing_ids_are_split_off() -> None:
    frames = serialize(Ping(), KEY)
    ids, rest = split_routing([b"\x00peer", b"proxy", *frames])
    assert ids == [b"\x00peer", b"proxy"]
    assert rest == frames
    assert isinstance(deserialize(rest, KEY, ReplayGuard()), Ping)
    with pytest.raises(ProtocolError) as caught:
        split_routing([b"\x00peer", *frames[1:]])
    assert caught.value.code is ErrorCode.MALFORMED


def test_each_side_accepts_only_the_other_sides_messages() -> None:
    assert isinstance(roundtrip(Ping(), accept=ClientMessage), Ping)
    error = refusal(serialize(Pong(), KEY), accept=ClientMessage)
    assert error.code is ErrorCode.UNKNOWN_TYPE and error.authenticated
    assert (
        refusal(serialize(Submit("x", rgba(1, 1), (b"s",)), KEY), accept=DaemonMessage).code
        is ErrorCode.UNKNOWN_TYPE
    )


def test_an_error_reply_is_built_from_a_refusal() -> None:
    frames = serialize(submit(2, style_weights=(1.0, 1.0)), KEY)
    error = refusal(edit_body(frames, lambda body: body["params"].update(strength=101)))
    assert error.authenticated and error.job_id == "job-1" and error.msg_id
    reply = Error.from_exception(error)
    assert reply.code is ErrorCode.INVALID_PARAM and "params.strength" in reply.message
    assert roundtrip(reply) == reply


# ---- signatures ------------------------------------------------------------------------------


def flip(frame: bytes, at: int = -2) -> bytes:
    data = bytearray(frame)
    data[at] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize("index", [2, 3], ids=["header", "content"])
def test_a_tampered_header_or_content_is_refused(index: int) -> None:
    frames = serialize(submit(), KEY)
    frames[index] = flip(frames[index])
    error = refusal(frames)
    assert error.code is ErrorCode.BAD_SIGNATURE
    assert error.is_signature_failure and not error.authenticated


@pytest.mark.parametrize("index", [4, 5, 6])
def test_each_tampered_buffer_is_refused(index: int) -> None:
    frames = serialize(submit(2), KEY)
    frames[index] = flip(frames[index], at=0)
    error = refusal(frames)
    assert error.code is ErrorCode.BAD_SIGNATURE and not error.authenticated


@pytest.mark.parametrize("change", ["append", "drop", "truncate"])
def test_added_dropped_or_shortened_buffers_are_refused(change: str) -> None:
    frames = serialize(submit(2), KEY)
    if change == "append":
        frames.append(b"extra")
    elif change == "drop":
        frames.pop()
    else:
        frames[4] = frames[4][:-1]
    assert refusal(frames).code is ErrorCode.BAD_SIGNATURE


def test_an_unsigned_message_is_refused() -> None:
    frames = serialize(Ping(), KEY)
    frames[1] = b""
    error = refusal(frames)
    assert error.code is ErrorCode.BAD_SIGNATURE and "unsigned" in error.message


@pytest.mark.parametrize("signature", [b"0" * 64, b"zz", b"\xff" * 64, b"0" * 65])
def test_a_made_up_signature_is_refused(signature: bytes) -> None:
    frames = serialize(Ping(), KEY)
    frames[1] = signature
    assert refusal(frames).code is ErrorCode.BAD_SIGNATURE


def test_a_message_signed_with_another_key_is_refused() -> None:
    assert refusal(serialize(Ping(), b"another key")).code is ErrorCode.BAD_SIGNATURE


def test_signing_needs_a_key() -> None:
    with pytest.raises(ValueError):
        serialize(Ping(), b"")


# ---- replays ---------------------------------------------------------------------------------


def test_a_replayed_message_is_refused() -> None:
    guard = ReplayGuard()
    frames = serialize(Cancel("job-1"), KEY)
    assert deserialize(frames, KEY, guard) == Cancel("job-1")
    error = refusal(frames, replay=guard)
    assert error.code is ErrorCode.REPLAYED and error.is_signature_failure
    assert not error.authenticated


@pytest.mark.parametrize("offset", [-1000.0, 1000.0])
def test_a_timestamp_far_from_now_is_refused(offset: float) -> None:
    frames = serialize(Ping(), KEY, now=time.time() + offset)
    assert refusal(frames).code is ErrorCode.REPLAYED


def test_a_tampered_copy_does_not_block_the_genuine_message() -> None:
    guard = ReplayGuard()
    frames = serialize(submit(1), KEY)
    forged = [*frames[:4], flip(frames[4], at=0), *frames[5:]]
    assert refusal(forged, replay=guard).code is ErrorCode.BAD_SIGNATURE
    assert deserialize(frames, KEY, guard) == submit(1)


def test_the_replay_memory_is_bounded_and_forgetting_opens_no_replay() -> None:
    clock = [1000.0]
    guard = ReplayGuard(window=60.0, max_entries=3, clock=lambda: clock[0])
    signatures = [bytes([i]) * 32 for i in range(6)]
    for i, signature in enumerate(signatures):
        guard.check(signature, 990.0 + i)
    assert len(guard) == 3
    for signature in signatures:  # forgotten or remembered: refused either way
        with pytest.raises(ProtocolError):
            guard.check(signature, 990.0 + signatures.index(signature))
    guard.check(b"new" * 11, 999.0)  # newer than the forgotten ones: accepted
    clock[0] = 2000.0
    guard.check(b"late" * 8, 1999.0)  # the old entries expire with the window
    assert len(guard) == 1


def test_a_clock_stepping_back_opens_no_replay() -> None:
    clock = [1000.0]
    guard = ReplayGuard(window=10.0, clock=lambda: clock[0])
    guard.check(b"a" * 32, 1000.0)
    clock[0] = 1100.0
    guard.check(b"b" * 32, 1100.0)  # forgets "a"
    clock[0] = 1000.0
    with pytest.raises(ProtocolError):
        guard.check(b"a" * 32, 1000.0)


# ---- shapes and sizes ------------------------------------------------------------------------


def test_a_message_without_the_delimiter_is_refused() -> None:
    frames = serialize(Ping(), KEY)
    assert refusal(frames[1:]).code is ErrorCode.MALFORMED
    assert refusal([b"routing-id", *frames]).code is ErrorCode.MALFORMED
    assert refusal([]).code is ErrorCode.MALFORMED
    assert refusal(frames[:3]).code is ErrorCode.MALFORMED


def test_too_many_frames_are_refused() -> None:
    frames = serialize(Ping(), KEY)
    frames += [b"x"] * (Limits().max_frames - len(frames) + 1)
    error = refusal(frames)
    assert error.code is ErrorCode.TOO_LARGE and not error.authenticated


def test_an_oversize_frame_is_refused_before_hashing() -> None:
    limits = Limits(max_frame_bytes=1000)
    error = refusal(serialize(Submit("big", rgba(16, 16), (b"s",)), KEY), limits=limits)
    assert error.code is ErrorCode.TOO_LARGE and "frame 4" in error.message
    big_json = serialize(Error(None, ErrorCode.INTERNAL, "x" * 4000), KEY)
    assert refusal(big_json, limits=Limits(max_json_bytes=1000)).code is ErrorCode.TOO_LARGE


def test_too_many_bytes_in_all_are_refused() -> None:
    limits = Limits(max_frame_bytes=1000, max_total_bytes=2000)
    frames = serialize(Submit("big", rgba(15, 15), (b"s" * 900, b"t" * 900)), KEY)
    assert refusal(frames, limits=limits).code is ErrorCode.TOO_LARGE


def test_a_non_bytes_frame_is_refused() -> None:
    frames = serialize(Ping(), KEY)
    frames[3] = "text"
    assert refusal(frames).code is ErrorCode.MALFORMED


def test_limits_must_leave_room_for_a_submit() -> None:
    with pytest.raises(ValueError):
        Limits(max_frames=8, max_styles=8)
    with pytest.raises(ValueError, match="masks"):  # every style may bring two masks
        Limits(max_frames=4 + 1 + 2 * 8, max_styles=8)
    with pytest.raises(ValueError):
        Limits(max_side=0)


def test_a_chosen_msg_id_is_used_and_checked() -> None:
    chosen = "ab" * 16
    envelope = deserialize_envelope(serialize(Ping(), KEY, msg_id=chosen), KEY, ReplayGuard())
    assert envelope.header.msg_id == chosen
    with pytest.raises(ValueError, match="msg_id"):
        serialize(Ping(), KEY, msg_id="not-hex")
