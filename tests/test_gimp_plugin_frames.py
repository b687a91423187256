"""The GIMP-free half of "Neural Style (frames)" (issue 20): its arguments and dialog, the
checks that refuse what the daemon cannot take before anything is sent, the progress text, and
putting a stylised frame back into a layer that does not cover the canvas. Real GIMP runs the
whole procedure in test_gimp_e2e_frames.py."""

from __future__ import annotations

import numpy as np
import pytest

from neural_style_gimp.arguments import ARGUMENTS, FRAME_ARGUMENTS, FRAME_DIALOG_LAYOUT
from neural_style_gimp.errors import PluginError
from neural_style_gimp.frames import (
    FramesInto,
    check_frames,
    frames_into,
    layer_window,
    paste_frame,
)
from neural_style_gimp.progress import ProgressReport
from neural_style_protocol.limits import DEFAULT_LIMITS
from neural_style_protocol.messages import Progress


def test_the_frames_dialog_shows_its_arguments_once_and_no_regions():
    shown = [name for _title, names in FRAME_DIALOG_LAYOUT for name in names]
    names = [argument.name for argument in FRAME_ARGUMENTS]
    assert sorted(shown) == sorted(names)
    assert "style-region" not in names and "region-channel" not in names
    # The rest as the other procedures have them, so last values read alike.
    common = {argument.name: argument for argument in ARGUMENTS}
    for argument in FRAME_ARGUMENTS:
        assert argument.name == "frames-into" or argument == common[argument.name]
    into = next(argument for argument in FRAME_ARGUMENTS if argument.name == "frames-into")
    assert [nick for nick, _ in into.choices] == [choice.value for choice in FramesInto]


def test_frames_into_defaults_to_a_new_image_and_names_a_bad_choice():
    assert frames_into(None) is FramesInto.NEW_IMAGE
    assert frames_into("in-place") is FramesInto.IN_PLACE
    with pytest.raises(PluginError, match="frames-into 'sideways' is not one of new-image"):
        frames_into("sideways")


@pytest.mark.parametrize(
    ("names", "groups", "size", "words"),
    [
        (["Only"], [], (64, 48), "has 1 layer: use Neural Style for a single layer"),
        ([], [], (64, 48), "has 0 layers"),
        (["A", "B"], ["B"], (64, 48), "\u201cB\u201d is a layer group"),
        ([str(i) for i in range(101)], [], (64, 48), "has 101 layers; the style daemon takes"),
        (["A", "B"], [], (9000, 100), "9000 x 100 pixels; the style daemon takes at most 8192"),
        (["x"] * 60, [], (2000, 1200), "60 frames of 2000 x 1200 pixels are 549 MiB"),
    ],
)
def test_what_the_daemon_cannot_take_is_refused_with_the_reason(names, groups, size, words):
    with pytest.raises(PluginError) as caught:
        check_frames(names, groups, *size)
    assert words in str(caught.value)


def test_the_most_frames_the_daemon_takes_pass():
    check_frames(["f"] * DEFAULT_LIMITS.max_sequence, [], 320, 240)


def test_progress_over_a_sequence_names_the_frame():
    later = Progress("a" * 32, 1, 1, 1, 4, 10, 0.5, {}, 2.0, 30.0, frame=2, frames=3)
    assert ProgressReport().update(later) == ("Neural style: frame 2/3, step 4/10, about 30 s left")
    first = Progress("a" * 32, 1, 2, 3, 4, 10, 0.1, {}, 2.0, None, frame=1, frames=3)
    assert ProgressReport().update(first) == "Neural style: frame 1/3, scale 2/3, step 4/10"
    assert ProgressReport().starting("3 frames") == (
        "Neural style: sending 3 frames to the style daemon"
    )


@pytest.mark.parametrize(
    ("offsets", "size", "window"),
    [
        ((0, 0), (8, 6), (0, 0, 0, 0, 8, 6)),
        ((5, 2), (8, 6), (5, 2, 0, 0, 3, 4)),  # off the right and bottom
        ((-3, -1), (8, 6), (0, 0, 3, 1, 5, 5)),  # off the left and top
        ((8, 0), (4, 4), None),  # beside the canvas
    ],
)
def test_the_window_where_a_layer_meets_the_canvas(offsets, size, window):
    assert layer_window(offsets, size, (8, 6)) == window


def test_a_frame_replaces_the_layers_part_of_the_canvas_only():
    canvas, size, offsets = (8, 6), (6, 5), (4, -2)
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 256, (5, 6, 4), np.uint8)
    frame = rng.integers(0, 256, (6, 8, 4), np.uint8)
    pasted = np.frombuffer(
        paste_frame(layer.tobytes(), size, offsets, frame.tobytes(), canvas), np.uint8
    ).reshape(5, 6, 4)
    expected = layer.copy()
    expected[2:, :4] = frame[0:3, 4:8]  # layer rows 2.. are canvas rows 0..; columns 0..3 are 4..7
    assert np.array_equal(pasted, expected)
    beside = paste_frame(layer.tobytes(), size, (8, 0), frame.tobytes(), canvas)
    assert beside == layer.tobytes()
