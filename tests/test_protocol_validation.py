"""Signed but unacceptable messages: strict JSON, strict bodies, the daemon's limits, and fuzzing
(whatever arrives, deserialize raises ProtocolError or returns a valid message)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import Limits
from neural_style_protocol.messages import (
    Accepted,
    JobStats,
    Message,
    Progress,
    Result,
    Submit,
)
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import DELIMITER, deserialize, serialize, sign

KEY = b"validation key"


def submit(styles: int = 1, width: int = 4, height: int = 3, **params: object) -> Submit:
    return Submit(
        "job-7",
        RawImage(bytes(width * height * 4), width, height),
        tuple(b"style %d" % i for i in range(styles)),
        JobParams(**params),
    )  # type: ignore[arg-type]


def resign(header: bytes, content: bytes, buffers: list) -> list:
    return [DELIMITER, sign(KEY, header, content), header, content, *buffers]


def with_body(message: Message, edit: Callable[[dict], object]) -> list:
    """The frames of `message` with its JSON body edited in place and signed again."""
    frames = serialize(message, KEY)
    content = json.loads(frames[3])
    edit(content["body"])
    return resign(frames[2], json.dumps(content).encode(), frames[4:])


def with_header(message: Message, edit: Callable[[dict], object]) -> list:
    frames = serialize(message, KEY)
    header = json.loads(frames[2])
    edit(header)
    return resign(json.dumps(header).encode(), frames[3], frames[4:])


def refused(frames: list, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        deserialize(frames, KEY, ReplayGuard(), limits=limits or Limits())
    return caught.value


# ---- strict JSON -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" * 40, "1." + "1" * 40]
)
def test_non_finite_or_huge_numbers_in_the_content_are_refused(number: str) -> None:
    frames = serialize(Accepted("job-7", 1), KEY)
    content = frames[3].replace(b'"queue_position":1', b'"queue_position":' + number.encode())
    error = refused(resign(frames[2], content, []))
    assert error.code is ErrorCode.MALFORMED and error.authenticated


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        b"42",
        b"null",
        b'"text"',
        b"{",
        b"\xff\xfe{}",
        b'{"body":{},"body":{}}',
        b"[" * 100_000,
    ],
)
def test_content_that_is_not_one_strict_json_object_is_refused(content: bytes) -> None:
    frames = serialize(Accepted("job-7", 1), KEY)
    error = refused(resign(frames[2], content, []))
    assert error.code is ErrorCode.MALFORMED and error.authenticated


def test_a_float_where_a_time_belongs_to_the_header_is_checked() -> None:
    error = refused(with_header(Accepted("job-7", 1), lambda h: h.update(time="now")))
    assert error.code is ErrorCode.MALFORMED


# ---- headers ---------------------------------------------------------------------------------


def test_another_protocol_version_is_refused() -> None:
    error = refused(with_header(Accepted("job-7", 1), lambda h: h.update(version=2, new=1)))
    assert error.code is ErrorCode.BAD_VERSION and error.authenticated


def test_an_unknown_message_type_is_refused() -> None:
    error = refused(with_header(Accepted("job-7", 1), lambda h: h.update(type="exec")))
    assert error.code is ErrorCode.UNKNOWN_TYPE


@pytest.mark.parametrize(
    "edit",
    [
        lambda h: h.update(extra=1),
        lambda h: h.pop("msg_id"),
        lambda h: h.update(msg_id="../../etc"),
        lambda h: h.update(session=7),
        lambda h: h.update(parent_id="x"),
        lambda h: h.update(version=True),
    ],
)
def test_a_malformed_header_is_refused(edit: Callable[[dict], object]) -> None:
    assert refused(with_header(Accepted("job-7", 1), edit)).code is ErrorCode.MALFORMED


# ---- bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda b: b.update(extra=1), ErrorCode.MALFORMED),
        (lambda b: b.pop("queue_position"), ErrorCode.MALFORMED),
        (lambda b: b.update(queue_position=True), ErrorCode.MALFORMED),
        (lambda b: b.update(queue_position=1.0), ErrorCode.MALFORMED),
        (lambda b: b.update(queue_position=-1), ErrorCode.MALFORMED),
        (lambda b: b.update(job_id="a/b"), ErrorCode.INVALID_PARAM),
        (lambda b: b.update(job_id="x" * 65), ErrorCode.INVALID_PARAM),
        (lambda b: b.update(job_id=""), ErrorCode.INVALID_PARAM),
    ],
)
def test_a_bad_body_is_refused(edit: Callable[[dict], object], code: ErrorCode) -> None:
    assert refused(with_body(Accepted("job-7", 1), edit)).code is code


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda b: b["params"].update(unknown=1), ErrorCode.INVALID_PARAM),
        (lambda b: b["params"].update(iterations=True), ErrorCode.INVALID_PARAM),
        (lambda b: b["params"].update(size=512.0), ErrorCode.INVALID_PARAM),
        (lambda b: b["params"].update(strength="high"), ErrorCode.INVALID_PARAM),
        (lambda b: b["params"].update(optimizer="sgd"), ErrorCode.INVALID_PARAM),
        (lambda b: b["params"].update(style_weights=[1.0, 1.0]), ErrorCode.INVALID_PARAM),
        (lambda b: b.update(params=[]), ErrorCode.INVALID_PARAM),
        (lambda b: b["content"].update(width=True), ErrorCode.INVALID_IMAGE),
        (lambda b: b["content"].update(width=5), ErrorCode.INVALID_IMAGE),
        (lambda b: b["content"].update(width=0), ErrorCode.INVALID_IMAGE),
        (lambda b: b["content"].update(height=9000), ErrorCode.INVALID_IMAGE),
        (lambda b: b["content"].update(channels=4), ErrorCode.MALFORMED),
        (lambda b: b["content"].update(buffer=1), ErrorCode.MALFORMED),
        (lambda b: b["content"].update(buffer=7), ErrorCode.MALFORMED),
        (lambda b: b["content"].update(buffer=-1), ErrorCode.MALFORMED),
        (lambda b: b["content"].update(path="/etc/passwd"), ErrorCode.MALFORMED),
        (lambda b: b.update(styles=[]), ErrorCode.MALFORMED),
        (lambda b: b.update(styles=[1]), ErrorCode.MALFORMED),
        (lambda b: b.update(styles=[{"buffer": 0}]), ErrorCode.MALFORMED),
    ],
)
def test_a_bad_submit_is_refused_with_its_job_id(
    edit: Callable[[dict], object], code: ErrorCode
) -> None:
    error = refused(with_body(submit(1), edit))
    assert error.code is code and error.authenticated and error.job_id == "job-7"


def test_a_byte_count_that_disagrees_with_the_size_is_refused() -> None:
    frames = with_body(submit(1, width=4, height=3), lambda b: b["content"].update(width=2))
    error = refused(frames)
    assert error.code is ErrorCode.INVALID_IMAGE and "bytes of pixels" in error.message


def test_the_daemons_limits_apply() -> None:
    limits = Limits(max_side=64, max_pixels=1000, max_styles=2, max_iterations=100)
    assert refused(serialize(submit(3), KEY), limits).code is ErrorCode.TOO_LARGE
    assert (
        refused(serialize(submit(1, width=65, height=1), KEY), limits).code
        is ErrorCode.INVALID_IMAGE
    )
    assert (
        refused(serialize(submit(1, width=40, height=40), KEY), limits).code is ErrorCode.TOO_LARGE
    )
    assert (
        refused(serialize(submit(1, iterations=101), KEY), limits).code is ErrorCode.INVALID_PARAM
    )
    assert refused(serialize(submit(1, size=128), KEY), limits).code is ErrorCode.INVALID_PARAM
    assert isinstance(
        deserialize(serialize(submit(2, iterations=100), KEY), KEY, ReplayGuard(), limits=limits),
        Submit,
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda b: b.update(work_done=1.5),
        lambda b: b.update(iteration=101),
        lambda b: b.update(scale=3),
        lambda b: b.update(losses={"style": "high"}),
        lambda b: b.update(losses=[1.0]),
        lambda b: b.update(eta=-1),
        lambda b: b["preview"].update(width=3),
        lambda b: b.update(tile=3, tiles=2),
        lambda b: b.update(tiles=-1),
    ],
)
def test_a_bad_progress_is_refused(edit: Callable[[dict], object]) -> None:
    message = Progress(
        "job-7",
        0,
        1,
        2,
        1,
        100,
        0.5,
        {"style": 1.0},
        1.0,
        preview=RawImage(bytes(2 * 2 * 3), 2, 2, channels=3),
    )
    assert refused(with_body(message, edit)).code in (ErrorCode.MALFORMED, ErrorCode.INVALID_IMAGE)


def test_a_result_with_a_non_bool_flag_is_refused() -> None:
    message = Result("job-7", RawImage(bytes(4), 1, 1), False, JobStats(1, 0.5, 0))
    assert refused(with_body(message, lambda b: b.update(cancelled=0))).code is ErrorCode.MALFORMED


# ---- fuzzing ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_protocol_errors(frames: list) -> None:
    try:
        message = deserialize(frames, KEY, ReplayGuard())
    except ProtocolError:
        return
    assert isinstance(message, Message)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_frames_only_raise_protocol_errors(frames: list[bytes]) -> None:
    only_protocol_errors(frames)
    only_protocol_errors([DELIMITER, *frames])


@FUZZ
@given(json_values, json_values, st.lists(st.binary(max_size=32), max_size=3))
def test_random_signed_json_only_raises_protocol_errors(
    header: object, content: object, buffers: list[bytes]
) -> None:
    header_bytes = json.dumps(header).encode()
    content_bytes = json.dumps(content).encode()
    only_protocol_errors(resign(header_bytes, content_bytes, buffers))


@FUZZ
@given(
    st.sampled_from(["job_id", "content", "styles", "params", "style_masks", "style_source_masks"]),
    json_values,
)
def test_random_values_in_a_signed_submit_only_raise_protocol_errors(
    key: str, value: object
) -> None:
    only_protocol_errors(with_body(submit(2), lambda body: body.update({key: value})))


@FUZZ
@given(st.sampled_from([field.name for field in fields(JobParams)]), json_values)
def test_random_parameter_values_only_raise_protocol_errors(key: str, value: object) -> None:
    only_protocol_errors(with_body(submit(2), lambda body: body["params"].update({key: value})))
