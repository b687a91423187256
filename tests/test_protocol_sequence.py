"""Animation frames on the wire (issue 20): Submit's `sequence`, Progress's frame counter and
finished frame, Result's later frames. Each travels as RGBA image frames beside the others, is
left off for a single image, and every bad one is refused with a code and a clear message."""

from __future__ import annotations

import json

import pytest
from test_protocol_masks import KEY, decoded, grey, refused, rgba, signed

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import Limits
from neural_style_protocol.messages import JobStats, Progress, Result, Submit
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import deserialize, serialize

WIDTH, HEIGHT = 4, 3


def frame(seed: int, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    return bytes((seed * 7 + i) % 256 for i in range(width * height * 4))


def sequence_submit(
    later: int = 2, styles: tuple[bytes, ...] = (b"style",), **masks: tuple
) -> Submit:
    frames = tuple(RawImage(frame(i + 2), WIDTH, HEIGHT) for i in range(later))
    return Submit("job-s", rgba(), styles, JobParams(), sequence=frames, **masks)


def test_a_sequence_round_trips_as_rgba_frames_after_the_styles() -> None:
    message = sequence_submit()
    frames = serialize(message, KEY)
    assert len(frames) == 4 + 1 + 1 + 2  # envelope, content, style, two later frames
    received = decoded(frames)
    assert received == message
    assert [bytes(f.data) for f in received.sequence] == [frame(2), frame(3)]


def test_a_single_image_leaves_the_sequence_off_the_wire() -> None:
    single = Submit("job-1", rgba(), (b"style",), JobParams())
    body = json.loads(serialize(single, KEY)[3])["body"]
    assert "sequence" not in body
    assert decoded(serialize(single, KEY)).sequence == ()


def test_a_frame_of_another_size_is_refused_by_number() -> None:
    odd = (RawImage(frame(2), WIDTH, HEIGHT), RawImage(frame(3, 3, 3), 3, 3))
    with pytest.raises(ProtocolError) as caught:
        Submit("job-s", rgba(), (b"style",), JobParams(), sequence=odd)
    assert caught.value.code is ErrorCode.INVALID_IMAGE
    assert str(caught.value.message) == (
        "frame 3 is 3x3, frame 1 is 4x3: every frame must have the same size"
    )

    def shrink(body: dict, buffers: list) -> None:  # a sender that skipped the check
        body["sequence"][0]["width"], body["sequence"][0]["height"] = 2, 6

    error = refused(signed(sequence_submit(), shrink))
    assert error.code is ErrorCode.INVALID_IMAGE and "frame 2 is 2x6" in error.message


def test_a_sequence_takes_no_masks() -> None:
    with pytest.raises(ProtocolError) as caught:
        sequence_submit(style_masks=(grey(),))
    assert caught.value.code is ErrorCode.INVALID_PARAM
    assert "not a sequence" in caught.value.message


def test_more_frames_than_the_limit_are_refused_before_reading_them() -> None:
    limits = Limits(max_sequence=3)
    assert decoded(serialize(sequence_submit(2), KEY), limits).sequence
    error = refused(serialize(sequence_submit(3), KEY), limits)
    assert error.code is ErrorCode.TOO_LARGE
    assert error.message == "4 frames, over the limit of 3"


def test_the_longest_sequence_fits_the_default_frame_limit() -> None:
    limits = Limits()
    styles = tuple(b"style %d" % i for i in range(limits.max_styles))
    message = sequence_submit(limits.max_sequence - 1, styles=styles)
    assert decoded(serialize(message, KEY)) == message
    with pytest.raises(ValueError, match="sequence"):
        Limits(max_frames=4 + 1 + 3 * 8, max_sequence=100)


def _progress(**changes: object) -> Progress:
    fields: dict[str, object] = {
        "frame": 2,
        "frames": 3,
        "frame_image": RawImage(frame(9), WIDTH, HEIGHT),
    }
    fields.update(changes)
    return Progress("job-s", 5, 1, 1, 4, 4, 0.5, {"total": 1.0}, 2.0, **fields)  # type: ignore[arg-type]


def _round_trip(message: Progress | Result) -> object:
    return deserialize(serialize(message, KEY), KEY, ReplayGuard(), limits=Limits())


def test_progress_names_the_frame_and_carries_each_finished_one() -> None:
    finished = _progress()
    assert _round_trip(finished) == finished
    plain = _progress(frame=0, frames=0, frame_image=None)
    body = json.loads(serialize(plain, KEY)[3])["body"]
    assert "frame_image" not in body and body["frames"] == 0
    assert _round_trip(plain) == plain


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"frame": 4}, "frame"),
        ({"frame": 0}, "frame"),
        ({"frame": 0, "frames": 0}, "frame image"),
        ({"frame_image": grey()}, "frame image"),
    ],
)
def test_a_bad_frame_counter_or_image_is_refused(changes: dict, words: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        _progress(**changes)
    assert words in caught.value.message


def test_a_result_carries_the_later_frames_in_order() -> None:
    later = tuple(RawImage(frame(i), WIDTH, HEIGHT) for i in (5, 6))
    result = Result("job-s", rgba(), False, JobStats(3, 1.0, 0), (), later)
    received = _round_trip(result)
    assert received == result
    assert isinstance(received, Result)
    assert [bytes(image.data) for image in received.images] == [
        bytes(rgba().data),
        frame(5),
        frame(6),
    ]
    with pytest.raises(ProtocolError, match="frame 2 is 3x3"):
        Result("job-s", rgba(), False, JobStats(3, 1.0, 0), (), (RawImage(frame(1, 3, 3), 3, 3),))
