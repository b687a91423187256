"""Hypothesis strategies for hostile messages to a daemon: each draws one multipart message (a
list of frames) that a sender holding `key` could put on the wire. Most are refused at the
signature check (raw garbage, flipped bits, replays) and dropped without a reply; the signed
ones reach the strict JSON, header and body checks and earn an error reply; a few are valid
and do something (a ping, a status, a cancel, a job). None is a valid `shutdown`: that one
would be obeyed, as it should."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields

from daemon_support import QUICK, content_image, style_png
from hypothesis import strategies as st

from neural_style_protocol.messages import Cancel, Message, Ping, StatusRequest, Submit
from neural_style_protocol.params import JobParams
from neural_style_protocol.wire import DELIMITER, serialize, sign

Frames = list[bytes]

FUZZ_JOB = "fuzz-job"
# The client's message types, and made-up ones; never "shutdown".
HEADER_TYPES = [
    "ping",
    "status",
    "cancel",
    "submit",
    "pong",
    "result",
    "error",
    "accepted",
    "progress",
    "status_reply",
    "",
    "PING",
    "shutdown\x00",
    "submit ",
]
HEADER_KEYS = ["version", "type", "msg_id", "session", "time", "parent_id", "extra"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
# A small, valid style (the daemon decodes the styles of valid jobs).
STYLE = style_png(16, 16)


def base_messages() -> list[Message]:
    """Valid client messages to start from (a fresh signature each time they are sent)."""
    return [
        Ping(),
        StatusRequest(),
        Cancel(FUZZ_JOB),
        Submit(FUZZ_JOB, content_image(20, 16)[0], (STYLE,), QUICK),
    ]


def _as_bytes(frames: list) -> Frames:
    return [bytes(frame) for frame in frames]


def _resign(key: bytes, header: bytes, content: bytes, buffers: list) -> Frames:
    return [DELIMITER, sign(key, header, content), header, content, *_as_bytes(buffers)]


def _edit(key: bytes, message: Message, part: int, edit: Callable[[dict], None]) -> Frames:
    """`message` with its header (part 2) or content (part 3) JSON edited and signed again."""
    frames = _as_bytes(serialize(message, key))
    obj = json.loads(frames[part])
    edit(obj if part == 2 else obj["body"])
    frames[part] = json.dumps(obj).encode()
    return _resign(key, frames[2], frames[3], frames[4:])


def _set(name: str, value: object, delete: bool) -> Callable[[dict], None]:
    def edit(obj: dict) -> None:
        if delete:
            obj.pop(name, None)
        else:
            obj[name] = value

    return edit


def messages(key: bytes) -> st.SearchStrategy[Frames]:
    """One hostile message, of any of the kinds below."""
    index = st.integers(0, len(base_messages()) - 1)
    raw = st.lists(st.binary(max_size=64), min_size=1, max_size=20)
    after_delimiter = st.lists(st.binary(max_size=64), max_size=8).map(
        lambda frames: [DELIMITER, *frames]
    )
    signed_json = st.builds(
        lambda header, content, buffers: _resign(
            key, json.dumps(header).encode(), json.dumps(content).encode(), buffers
        ),
        json_values,
        json_values,
        st.lists(st.binary(max_size=32), max_size=3),
    )
    body_value = st.builds(
        lambda i, name, value, delete: _edit(key, base_messages()[i], 3, _set(name, value, delete)),
        index,
        st.sampled_from(["job_id", "content", "styles", "params", "extra"]),
        json_values,
        st.booleans(),
    )
    param_value = st.builds(
        lambda name, value, delete: _edit(
            key, base_messages()[3], 3, lambda body: _set(name, value, delete)(body["params"])
        ),
        st.sampled_from([*(field.name for field in fields(JobParams)), "extra"]),
        json_values,
        st.booleans(),
    )
    header_value = st.builds(
        lambda i, name, value, delete: _edit(key, base_messages()[i], 2, _set(name, value, delete)),
        index,
        st.sampled_from(HEADER_KEYS),
        (st.sampled_from(HEADER_TYPES) | json_values).map(_not_shutdown),
        st.booleans(),
    )
    flipped = st.builds(
        _flip_bit(key), index, st.integers(0, 7), st.integers(0, 2**16), st.integers(0, 7)
    )
    extra_frames = st.builds(
        lambda i, frames: [*_as_bytes(serialize(base_messages()[i], key)), *frames],
        index,
        st.lists(st.binary(max_size=16), min_size=1, max_size=16),
    )
    return st.one_of(
        raw,
        after_delimiter,
        signed_json,
        body_value,
        param_value,
        header_value,
        flipped,
        extra_frames,
    )


def _not_shutdown(value: object) -> object:
    # Hypothesis also tries string constants it finds in the code under test: a header of
    # type "shutdown" on a ping's empty body would be a valid order to stop.
    return "shutdown?" if value == "shutdown" else value


def _flip_bit(key: bytes) -> Callable[[int, int, int, int], Frames]:
    def flip(index: int, frame: int, position: int, bit: int) -> Frames:
        frames = _as_bytes(serialize(base_messages()[index], key))
        target = frame % len(frames)
        data = bytearray(frames[target])
        if data:
            data[position % len(data)] ^= 1 << bit
        frames[target] = bytes(data)
        return frames

    return flip
