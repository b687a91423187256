"""A style per region in the plug-in, without GIMP (regions.py): the region argument, the masks
a job gets for each choice, the inverse for the second style, how the result is written back,
and the messages for regions and style masks that cannot work. GIMP's side (reading the
selection, channels and layer masks) is in test_gimp_e2e_regions.py."""

from __future__ import annotations

import pytest

from neural_style_gimp.arguments import (
    BY_NAME,
    CHANNEL,
    CHOICE,
    DIALOG_LAYOUT,
    DIALOG_SENSITIVITY,
    job_params,
)
from neural_style_gimp.errors import PluginError
from neural_style_gimp.regions import (
    NO_SELECTION,
    ResultArea,
    StyleRegion,
    check_region,
    invert,
    is_black,
    other_image_channel,
    region_masks,
    result_area,
    source_mask,
    style_region,
)
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Submit

CHANNEL_LAYER = object()  # what GIMP hands over for a channel: the logic only checks it is set
# A 4 x 2 region with a soft edge: 255 inside, 0 outside, grey between.
EDGE = bytes([255, 255, 128, 0, 255, 200, 64, 0])


def test_the_region_arguments_are_in_the_table_and_the_dialog():
    region = BY_NAME["style-region"]
    assert region.kind == CHOICE and region.default == "everywhere"
    assert [nick for nick, _ in region.choices] == [r.value for r in StyleRegion]
    assert BY_NAME["region-channel"].kind == CHANNEL
    frames = {title: names for title, names in DIALOG_LAYOUT}
    assert frames["Regions"] == ("style-region", "region-channel")
    # Next to the second style, whose meaning the region decides.
    titles = [title for title, _ in DIALOG_LAYOUT]
    assert titles.index("Regions") == titles.index("Second style (optional)") + 1
    for name, choice, values in DIALOG_SENSITIVITY:
        assert name in BY_NAME and BY_NAME[choice].kind == CHOICE
        assert set(values) <= {nick for nick, _ in BY_NAME[choice].choices}


@pytest.mark.parametrize(
    "values, expected",
    [
        ({}, StyleRegion.EVERYWHERE),  # a script written before regions
        ({"style-region": "everywhere"}, StyleRegion.EVERYWHERE),
        ({"style-region": "selection"}, StyleRegion.SELECTION),
        ({"style-region": "channel", "region-channel": CHANNEL_LAYER}, StyleRegion.CHANNEL),
    ],
)
def test_the_region_choice(values, expected):
    assert style_region(values) is expected


@pytest.mark.parametrize(
    "values, message",
    [
        ({"style-region": "channel"}, "no region channel is chosen: choose one"),
        ({"style-region": "left half"}, "style-region 'left half' is not one of everywhere"),
    ],
)
def test_a_region_choice_that_cannot_work_says_why(values, message):
    with pytest.raises(PluginError, match=message):
        style_region(values)


def test_everywhere_sends_no_masks_as_before():
    assert region_masks(StyleRegion.EVERYWHERE, None, 4, 2, 1) == ()
    assert region_masks(StyleRegion.EVERYWHERE, None, 4, 2, 2) == ()


@pytest.mark.parametrize("region", [StyleRegion.SELECTION, StyleRegion.CHANNEL])
def test_the_first_style_goes_in_the_region_and_the_second_in_the_rest(region):
    (alone,) = region_masks(region, EDGE, 4, 2, 1)  # no second style: the rest has none
    assert alone == RawImage(EDGE, 4, 2, 1)
    first, second = region_masks(region, EDGE, 4, 2, 2)
    assert first == alone
    assert second == RawImage(bytes([0, 0, 127, 255, 0, 55, 191, 255]), 4, 2, 1)


def test_inversion_is_exact_for_every_grey_level():
    levels = bytes(range(256))
    assert invert(levels) == bytes(255 - level for level in levels)
    assert invert(invert(levels)) == levels


def test_region_masks_make_a_valid_job():
    content = RawImage(bytes(4 * 2 * 4), 4, 2, 4)
    masks = region_masks(StyleRegion.SELECTION, EDGE, 4, 2, 2)
    job = Submit("a" * 32, content, (b"png", b"png"), style_masks=masks)
    assert job.style_masks == masks


@pytest.mark.parametrize(
    "region, styles, area",
    [
        (StyleRegion.EVERYWHERE, 1, ResultArea.SELECTION),
        (StyleRegion.EVERYWHERE, 2, ResultArea.SELECTION),
        (StyleRegion.SELECTION, 1, ResultArea.REGION),  # the photo outside: clipped
        (StyleRegion.SELECTION, 2, ResultArea.WHOLE),  # the second style outside: all of it
        (StyleRegion.CHANNEL, 1, ResultArea.REGION),
        (StyleRegion.CHANNEL, 2, ResultArea.WHOLE),
    ],
)
def test_what_the_result_replaces(region, styles, area):
    assert result_area(region, styles) is area


def test_in_a_region_the_share_is_not_used_nor_checked():
    # Each style rules its own part at full strength: a share of 100 % leaves the first style
    # its region, and is no error.
    values = {"second-style-share": 100.0, "style-region": "selection"}
    assert job_params(values, 64, 48, 2, "cpu").style_weights is None
    blended = {"second-style-share": 25.0}
    assert job_params(blended, 64, 48, 2, "cpu").style_weights == (75.0, 25.0)
    with pytest.raises(PluginError, match="leaves nothing of the first style"):
        job_params({"second-style-share": 100.0}, 64, 48, 2, "cpu")


def test_a_region_black_over_the_layer_is_refused():
    assert is_black(bytes(8)) and not is_black(bytes(7) + b"\1")
    check_region(EDGE, "Photo")
    check_region(bytes(7) + b"\1", "Photo", "Sky")  # one faint pixel is somewhere
    with pytest.raises(PluginError, match="The selection does not touch the layer \u201cPhoto"):
        check_region(bytes(8), "Photo")
    with pytest.raises(PluginError, match="region channel \u201cSky\u201d is black over the"):
        check_region(bytes(8), "Photo", "Sky")


def test_the_region_messages_say_what_to_do():
    assert NO_SELECTION.startswith(
        "There is no selection: select where the first style goes, or choose Everywhere"
    )
    assert "choose a channel of the image being stylised" in str(other_image_channel("Sky"))


def test_a_style_layer_mask_is_the_part_to_learn_from_unless_it_is_black():
    assert source_mask(EDGE, 4, 2, "Painting", from_selection=False) == RawImage(EDGE, 4, 2, 1)
    with pytest.raises(PluginError, match=r"mask of the style layer \u201cPainting\u201d is bla"):
        source_mask(bytes(8), 4, 2, "Painting", from_selection=False)
    with pytest.raises(PluginError, match=r"does not touch that layer.*Select > None"):
        source_mask(bytes(8), 4, 2, "Painting", from_selection=True)
