"""Region masks on the wire (issue 17): Submit's style_masks and style_source_masks travel as
1-channel image frames beside the others, are left off for a job without them, and every
malformed mask is refused with a code and a message that says what is wrong."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest

from neural_style_protocol.codec import encode
from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import Limits
from neural_style_protocol.messages import Submit
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import DELIMITER, deserialize, serialize, sign

KEY = b"mask key"
WIDTH, HEIGHT = 4, 3


def grey(width: int = WIDTH, height: int = HEIGHT, value: int = 255) -> RawImage:
    return RawImage(bytes([value]) * (width * height), width, height, channels=1)


def rgba(width: int = WIDTH, height: int = HEIGHT) -> RawImage:
    return RawImage(bytes(range(width * height * 4)), width, height)


def masked_submit(
    masks: tuple[RawImage | None, ...] = (grey(value=200), None),
    sources: tuple[RawImage | None, ...] = (None, grey(6, 5, value=9)),
    styles: int = 2,
) -> Submit:
    return Submit(
        "job-m",
        rgba(),
        tuple(b"style %d" % i for i in range(styles)),
        JobParams(),
        masks,
        sources,
    )


def decoded(frames: list, limits: Limits | None = None) -> Submit:
    message = deserialize(frames, KEY, ReplayGuard(), limits=limits or Limits())
    assert isinstance(message, Submit)
    return message


def refused(frames: list, limits: Limits | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        deserialize(frames, KEY, ReplayGuard(), limits=limits or Limits())
    return caught.value


def signed(message: Submit, edit: Callable[[dict, list], object]) -> list:
    """The frames of `message` after `edit(body, buffers)` changed its JSON body and its list
    of buffers in place, signed again (digests included): they pass every check up to the
    body's, so what is refused is the body."""
    frames = serialize(message, KEY)
    body = json.loads(frames[3])["body"]
    buffers = [bytes(frame) for frame in frames[4:]]
    edit(body, buffers)
    digests = [{"size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for b in buffers]
    content = json.dumps({"body": body, "buffers": digests}).encode()
    return [DELIMITER, sign(KEY, frames[2], content), frames[2], content, *buffers]


# ---- round trips -----------------------------------------------------------------------------


def test_masks_round_trip_as_grey_frames_after_the_styles() -> None:
    message = masked_submit()
    frames = serialize(message, KEY)
    # content, two styles, then one region mask and one source mask: one frame each
    assert len(frames) == 4 + 1 + 2 + 1 + 1
    assert frames[7] is message.style_masks[0].data  # type: ignore[union-attr]
    assert len(frames[8]) == 6 * 5  # one byte a pixel: the schema says grey
    body = json.loads(frames[3])["body"]
    assert body["style_masks"] == [{"buffer": 3, "width": 4, "height": 3}, None]
    assert body["style_source_masks"] == [None, {"buffer": 4, "width": 6, "height": 5}]
    back = decoded(frames)
    assert back == message
    assert [m.channels for m in back.style_masks + back.style_source_masks if m] == [1, 1]
    assert bytes(back.style_masks[0].data) == bytes([200]) * 12  # type: ignore[union-attr]


def test_a_job_without_masks_carries_no_mask_keys_as_an_older_daemon_expects() -> None:
    plain = Submit("job-p", rgba(), (b"style",))
    body, buffers = encode(plain)
    assert "style_masks" not in body and "style_source_masks" not in body
    assert len(buffers) == 2
    # Nones only say nothing either: they are no masks.
    only_nones = masked_submit(masks=(None, None), sources=(None, None))
    assert only_nones.style_masks == only_nones.style_source_masks == ()
    assert "style_masks" not in encode(only_nones)[0]


def test_a_submit_from_an_older_client_without_the_keys_has_no_masks() -> None:
    frames = signed(masked_submit(), _drop_masks)
    back = decoded(frames)
    assert back.style_masks == () and back.style_source_masks == ()


def test_empty_lists_on_the_wire_are_no_masks() -> None:
    def empty(body: dict, buffers: list) -> None:
        _drop_masks(body, buffers)
        body.update(style_masks=[], style_source_masks=[])

    assert decoded(signed(masked_submit(), empty)).style_masks == ()


def _drop_masks(body: dict, buffers: list) -> None:
    del body["style_masks"], body["style_source_masks"]
    del buffers[3:]


def test_a_source_mask_may_have_any_size_only_the_daemon_can_check() -> None:
    message = masked_submit(sources=(grey(100, 1), grey(1, 70)))
    assert decoded(serialize(message, KEY)) == message


# ---- refusals of malformed masks -------------------------------------------------------------


def _set_mask(key: str, index: int, **changes: object) -> Callable[[dict, list], object]:
    return lambda body, buffers: body[key][index].update(changes)


def _mask_buffer(size: int) -> Callable[[dict, list], object]:
    """The first region mask's frame replaced by `size` bytes."""

    def edit(body: dict, buffers: list) -> None:
        buffers[body["style_masks"][0]["buffer"]] = bytes(size)

    return edit


def _extra_buffer(body: dict, buffers: list) -> None:
    buffers.append(bytes(WIDTH * HEIGHT))


def _unreferenced(body: dict, buffers: list) -> None:
    body["style_masks"][0] = None  # its frame is still there


def _two_masks_one_frame(body: dict, buffers: list) -> None:
    body["style_source_masks"][1] = {"buffer": 3, "width": WIDTH, "height": HEIGHT}
    del buffers[4]


def _content_frame_again(body: dict, buffers: list) -> None:
    body["style_masks"][0]["buffer"] = 0
    del buffers[3]
    body["style_source_masks"][1]["buffer"] = 3


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        # The channel count is the schema's: three bytes a pixel cannot be a mask.
        (_mask_buffer(WIDTH * HEIGHT * 3), ErrorCode.INVALID_IMAGE, "36 bytes of pixels"),
        (_mask_buffer(WIDTH * HEIGHT - 1), ErrorCode.INVALID_IMAGE, "11 bytes of pixels"),
        (_set_mask("style_masks", 0, channels=3), ErrorCode.MALFORMED, "channels"),
        (
            _set_mask("style_masks", 0, width=2, height=6),
            ErrorCode.INVALID_IMAGE,
            "style_masks[0] is 2x6; the content is 4x3",
        ),
        (_set_mask("style_masks", 0, width=0), ErrorCode.INVALID_IMAGE, "style_masks[0].width"),
        (_set_mask("style_masks", 0, width=True), ErrorCode.INVALID_IMAGE, "width"),
        (_set_mask("style_masks", 0, buffer=9), ErrorCode.MALFORMED, "style_masks[0].buffer"),
        (
            lambda body, buffers: body["style_masks"].pop(),
            ErrorCode.INVALID_PARAM,
            "1 style_masks for 2 style images",
        ),
        (
            lambda body, buffers: body["style_source_masks"].append(None),
            ErrorCode.INVALID_PARAM,
            "3 style_source_masks for 2 style images",
        ),
        (
            lambda body, buffers: body.update(style_masks={"buffer": 3}),
            ErrorCode.MALFORMED,
            "must be a list",
        ),
        (
            lambda body, buffers: body["style_masks"].__setitem__(0, 3),
            ErrorCode.MALFORMED,
            "style_masks[0] must be a JSON object",
        ),
        (_extra_buffer, ErrorCode.MALFORMED, "1 buffer(s) not referenced"),
        (_unreferenced, ErrorCode.MALFORMED, "1 buffer(s) not referenced"),
        (_two_masks_one_frame, ErrorCode.MALFORMED, "already used"),
        (_content_frame_again, ErrorCode.MALFORMED, "already used"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_malformed_mask_is_refused_with_a_clear_message(
    edit: Callable[[dict, list], object], code: ErrorCode, words: str
) -> None:
    error = refused(signed(masked_submit(), edit))
    assert error.code is code, error.message
    assert words in error.message
    assert error.authenticated and error.job_id == "job-m"  # the client gets an Error reply


def test_masks_are_held_to_the_daemons_limits() -> None:
    limits = Limits(max_side=64, max_pixels=1000, max_styles=2)
    wide = masked_submit(sources=(None, grey(65, 1)))
    assert refused(serialize(wide, KEY), limits).code is ErrorCode.INVALID_IMAGE
    many = masked_submit(sources=(None, grey(40, 40)))
    error = refused(serialize(many, KEY), limits)
    assert error.code is ErrorCode.TOO_LARGE and "over 1000 pixels" in error.message

    def three(body: dict, buffers: list) -> None:
        body["style_masks"] += [None]

    error = refused(signed(masked_submit(), three), Limits(max_styles=2))
    assert error.code is ErrorCode.MALFORMED and "0 to 2 items" in error.message


def test_the_most_styles_with_both_masks_fit_the_default_frame_limit() -> None:
    styles = Limits().max_styles
    message = masked_submit((grey(),) * styles, (grey(2, 2),) * styles, styles=styles)
    frames = serialize(message, KEY)
    assert len(frames) == 4 + 1 + 3 * styles
    assert decoded(frames) == message


# ---- the message itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("masks", "sources", "code", "words"),
    [
        ((rgba(), None), (), ErrorCode.INVALID_IMAGE, "style_masks[0] must be a grey"),
        ((RawImage(bytes(36), 4, 3, 3), None), (), ErrorCode.INVALID_IMAGE, "grey (1-channel)"),
        ((b"\xff" * 12, None), (), ErrorCode.INVALID_IMAGE, "style_masks[0]"),
        ((), (None, rgba()), ErrorCode.INVALID_IMAGE, "style_source_masks[1] must be a grey"),
        ((grey(3, 4), None), (), ErrorCode.INVALID_IMAGE, "is 3x4; the content is 4x3"),
        ((grey(),), (), ErrorCode.INVALID_PARAM, "1 style_masks for 2 style images"),
        ((), (grey(),) * 3, ErrorCode.INVALID_PARAM, "3 style_source_masks for 2"),
        (grey(), (), ErrorCode.MALFORMED, "style_masks must be a sequence"),
    ],
)
def test_a_submit_with_bad_masks_cannot_be_built(
    masks: object, sources: object, code: ErrorCode, words: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        masked_submit(masks, sources)  # type: ignore[arg-type]
    assert caught.value.code is code and words in caught.value.message


def test_a_raw_image_is_grey_rgb_or_rgba() -> None:
    assert grey(2, 2).nbytes == 4
    for channels in (0, 2, 5):
        with pytest.raises(ProtocolError) as caught:
            RawImage(bytes(4 * channels), 2, 2, channels)
        assert caught.value.code is ErrorCode.INVALID_IMAGE
