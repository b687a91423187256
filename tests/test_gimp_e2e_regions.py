"""A style per region in real GIMP 3 (issue 17; Gatys et al. 2017's spatial control): the first
style in a feathered selection and the second outside it, in place within a selection with the
photo kept outside, a channel as the region, a style layer's mask as the part to learn from,
and the messages for regions that cannot work. The styles are flat red and blue, so that even
the test daemon's random weights show which style went where.

One GIMP session runs every case (GIMP's start is most of a small job's time); each test reads
its own part of what the session wrote. One Undo of a region run is checked in the full GIMP,
in test_gimp_dialog.py. GIMP 3 comes from tests/gimp/setup-gimp3.sh; where it cannot be set up
these tests skip with the reason, in CI they fail."""

from __future__ import annotations

import io

import numpy as np
import pytest
from gimp_support import GimpWorkspace, batch_session, content
from PIL import Image

pytestmark = pytest.mark.slow

NEW_LAYER = "python-fu-neural-style"
IN_PLACE = "python-fu-neural-style-in-place"
RED, BLUE = (220, 40, 30), (30, 60, 220)
WIDTH, HEIGHT = 64, 48
# What the style does to a flat grey photo: the colour of its style, red over blue by this much.
TINT = 20


def flat_png(colour: tuple[int, int, int], seed: int) -> bytes:
    noise = np.random.default_rng(seed).normal(0, 12, (48, 48, 3))
    pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def grey_photo(width: int, height: int) -> np.ndarray:
    noise = np.random.default_rng(3).normal(0, 10, (height, width, 3))
    rgb = np.clip(128 + noise, 0, 255)
    return np.dstack([rgb, np.full((height, width), 255)]).astype(np.uint8)


def write_grey(space: GimpWorkspace, name: str, mask: np.ndarray) -> str:
    path = space.folder / f"{name}.raw"
    path.write_bytes(np.ascontiguousarray(mask, np.uint8).tobytes())
    return space.gimp.inside(path)


def read_grey(space: GimpWorkspace, name: str, width: int, height: int) -> np.ndarray:
    data = (space.folder / f"{name}.raw").read_bytes()
    return np.frombuffer(data, np.uint8).reshape(height, width)


# Where things are: layer (b) off the canvas's bottom-right corner, layer (c) off its left.
B_OFFSETS, B_SIZE = (24, 16), (48, 40)
B_SMALL_OFFSETS, B_SMALL_SIZE = (4, 4), (24, 16)
C_OFFSETS, C_SIZE = (-8, 12), (48, 40)
CHANNEL_BOX = (0, 0, 40, 30)  # x, y, width, height on the canvas
SELECTION_BOX = (20, 35, 30, 10)  # over layer (c), not over the channel


def session_code(space: GimpWorkspace) -> str:
    for name, colour, seed in (("red", RED, 1), ("blue", BLUE, 2)):
        (space.folder / f"{name}.png").write_bytes(flat_png(colour, seed))
    red, blue = (space.gimp.inside(space.folder / f"{n}.png") for n in ("red", "blue"))
    x, y, w, h = CHANNEL_BOX
    channel = np.zeros((HEIGHT, WIDTH), np.uint8)
    channel[y : y + h, x : x + w] = 255
    gallery = np.zeros((32, 64, 4), np.uint8)
    gallery[..., 3] = 255
    gallery[:, :32, :3], gallery[:, 32:, :3] = RED, BLUE
    left_half = np.zeros((32, 64), np.uint8)
    left_half[:, :32] = 255
    pixels = {
        "grey": space.write_pixels("grey", grey_photo(WIDTH, HEIGHT)),
        "b": space.write_pixels("b", content(*B_SIZE, seed=1)),
        "b-small": space.write_pixels("b-small", content(*B_SMALL_SIZE, seed=2, alpha=False)),
        "c": space.write_pixels("c", content(*C_SIZE, seed=3, alpha=False)),
        "gallery": space.write_pixels("gallery", gallery),
        "channel": write_grey(space, "channel", channel),
        "left-half": write_grey(space, "left-half", left_half),
        "black": write_grey(space, "black", np.zeros((32, 64), np.uint8)),
        "black-canvas": write_grey(space, "black-canvas", np.zeros((HEIGHT, WIDTH), np.uint8)),
    }
    common = {"quality": "draft", "strength": 90.0, "size": 32}
    return f"""
results = {{}}
pixels = {pixels!r}
common = {common!r}
def image_with(name, width, height, offsets=(0, 0), alpha=False, size=({WIDTH}, {HEIGHT})):
    image = Gimp.Image.new(size[0], size[1], Gimp.ImageBaseType.RGB)
    return image, add_layer(image, "Photo", pixels[name], width, height, offsets, alpha=alpha)

# (a) A feathered selection: red in it, blue outside, as a new layer.
image, photo = image_with("grey", {WIDTH}, {HEIGHT})
image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, {WIDTH // 2}, {HEIGHT})
Gimp.Selection.feather(image, 8.0)
selection = mask_over(image.get_selection(), photo)
write_raw(FOLDER, "a-selection", selection)
results["a"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={red!r},
                             second_style_file={blue!r}, style_region="selection", **common)
results["a-selection-kept"] = mask_over(image.get_selection(), photo) == selection
dump(image, FOLDER, "a")

# (b) In place, within a selection, on two layers (one partly off the canvas), the photo kept
# outside it.
image, photo = image_with("b", {B_SIZE[0]}, {B_SIZE[1]}, {B_OFFSETS}, alpha=True)
small = add_layer(image, "Small", pixels["b-small"], {B_SMALL_SIZE[0]}, {B_SMALL_SIZE[1]},
                  {B_SMALL_OFFSETS}, alpha=False)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 12, 8, 40, 30)
Gimp.Selection.feather(image, 6.0)
write_raw(FOLDER, "b-selection", mask_over(image.get_selection(), photo))
write_raw(FOLDER, "b-small-selection", mask_over(image.get_selection(), small))
results["b"] = run_procedure({IN_PLACE!r}, image, [photo, small], style_file={red!r},
                             style_region="selection", **common)
dump(image, FOLDER, "b")

# (c) A channel as the region (the layer partly off the canvas), as a new layer, then in
# place; the selection, over the layer but not the channel, is not the region, and stays.
image, photo = image_with("c", {C_SIZE[0]}, {C_SIZE[1]}, {C_OFFSETS})
channel = add_channel(image, "Sky", pixels["channel"])
image.select_rectangle(Gimp.ChannelOps.REPLACE, *{SELECTION_BOX})
dump(image, FOLDER, "c-before")
results["c"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={red!r},
                             style_region="channel", region_channel=channel, **common)
dump(image, FOLDER, "c")
image.set_selected_layers([photo])
results["c-in-place"] = run_procedure({IN_PLACE!r}, image, [photo], style_file={red!r},
                                      style_region="channel", region_channel=channel, **common)
results["c-kept"] = [list(Gimp.Selection.bounds(image)[1:]),
                     [layer.get_name() for layer in image.get_selected_layers()],
                     len(image.get_channels())]
dump(image, FOLDER, "c-in-place")

# (d) A style layer whose mask shows only its red half; its image's selection (the blue half)
# gives way to the mask.
image, photo = image_with("grey", {WIDTH}, {HEIGHT})
gallery = Gimp.Image.new(64, 32, Gimp.ImageBaseType.RGB)
painting = add_layer(gallery, "Painting", pixels["gallery"], 64, 32)
add_layer_mask(painting, pixels["left-half"])
gallery.select_rectangle(Gimp.ChannelOps.REPLACE, 32, 0, 32, 32)
results["d"] = run_procedure({NEW_LAYER!r}, image, [photo], style_layer=painting, **common)
dump(image, FOLDER, "d")

# Refusals, before any job: nothing may change.
image, photo = image_with("grey", 32, 24, (40, 30))
before = read_pixels(photo)
results["no-selection"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={red!r},
                                        style_region="selection")
results["no-channel"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={red!r},
                                      style_region="channel")
black = add_channel(image, "Empty", pixels["black-canvas"])
results["black-channel"] = run_procedure({IN_PLACE!r}, image, [photo], style_file={red!r},
                                         style_region="channel", region_channel=black)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 20, 20)  # not over the layer
results["untouched"] = run_procedure({IN_PLACE!r}, image, [photo], style_file={red!r},
                                     second_style_file={blue!r}, style_region="selection")
elsewhere, other = image_with("grey", 32, 24)
foreign = add_channel(elsewhere, "Foreign", pixels["black-canvas"])
results["foreign-channel"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={red!r},
                                           style_region="channel", region_channel=foreign)
gallery = Gimp.Image.new(64, 32, Gimp.ImageBaseType.RGB)
masked = add_layer(gallery, "Masked", pixels["gallery"], 64, 32)
add_layer_mask(masked, pixels["black"])
results["black-source"] = run_procedure({NEW_LAYER!r}, image, [photo], style_layer=masked)
gallery.select_rectangle(Gimp.ChannelOps.REPLACE, 40, 0, 10, 10)
loose = add_layer(gallery, "Loose", pixels["b-small"], 24, 16, (0, 12))
results["source-selection-away"] = run_procedure({NEW_LAYER!r}, image, [photo],
                                                 style_layer=loose)
results["unchanged"] = [len(image.get_layers()) == 1, read_pixels(photo) == before,
                        Gimp.Selection.bounds(image)[1:] == (True, 0, 0, 20, 20)]
report(FOLDER, **results)
"""


@pytest.fixture(scope="module")
def session(gimp3):
    """The one GIMP session: (the workspace, its report)."""
    with batch_session(gimp3, session_code) as session:
        yield session


def tint(pixels: np.ndarray, where: np.ndarray) -> float:
    """How much redder than blue the pixels are, on average, where `where` holds."""
    return float(pixels[where, 0].astype(int).mean() - pixels[where, 2].astype(int).mean())


def test_first_style_in_a_feathered_selection_second_outside_as_a_new_layer(session):
    space, report = session
    assert report["a"] == ["success", None], report["a"]
    new, source = space.layers("a")
    assert new["name"] == "Photo (red + blue)"
    assert not new["mask"]  # the second style covers the rest: the whole layer is the result
    assert (new["pixels"][..., 3] == 255).all()
    selection = read_grey(space, "a-selection", WIDTH, HEIGHT)
    assert 0 < selection[HEIGHT // 2, WIDTH // 2] < 255  # feathered
    assert tint(new["pixels"], selection >= 250) > TINT
    assert tint(new["pixels"], selection <= 5) < -TINT
    assert report["a-selection-kept"]
    assert np.array_equal(source["pixels"], grey_photo(WIDTH, HEIGHT))


def test_in_place_within_a_selection_keeps_the_photo_exactly_outside_it(session):
    space, report = session
    assert report["b"] == ["success", None], report["b"]
    small, photo = space.layers("b")  # top first; no layer added
    for layer, original, name in (
        (photo, content(*B_SIZE, seed=1), "b-selection"),
        (small, content(*B_SMALL_SIZE, seed=2, alpha=False), "b-small-selection"),
    ):
        selection = read_grey(space, name, *original.shape[1::-1])
        outside, inside = selection == 0, (selection == 255) & (original[..., 3] > 0)
        assert outside.any() and inside.any(), name
        after = layer["pixels"].astype(int)
        assert np.array_equal(after[outside], original[outside]), name
        assert np.abs(after[inside, :3] - original[inside, :3]).mean() > 5, name
        assert np.array_equal(after[..., 3], original[..., 3]), name


def test_a_channel_as_the_region_masks_the_new_layer_to_it(session):
    space, report = session
    assert report["c"] == ["success", None], report["c"]
    new, _source = space.layers("c")
    assert new["mask"] and new["offsets"] == list(C_OFFSETS)
    # The channel over the layer's area (canvas x 0..40, y 0..30 is the layer's x 8..48, y
    # 0..18): none of it off the canvas, none of the selection.
    expected = np.zeros(C_SIZE[::-1], np.uint8)
    expected[:18, 8:] = 255
    assert np.array_equal(new["mask_pixels"], expected)
    before = space.composite("c-before", WIDTH, HEIGHT).astype(int)
    after = space.composite("c", WIDTH, HEIGHT).astype(int)
    x, y, w, h = CHANNEL_BOX
    channel = np.zeros((HEIGHT, WIDTH), bool)
    channel[y : y + h, x : x + w] = True
    assert np.array_equal(after[~channel], before[~channel])
    layer = np.zeros((HEIGHT, WIDTH), bool)
    layer[C_OFFSETS[1] :, : C_SIZE[0] + C_OFFSETS[0]] = True
    assert np.abs(after[channel & layer] - before[channel & layer]).mean() > 5


def test_in_place_within_a_channel_keeps_the_photo_outside_and_the_selection(session):
    space, report = session
    assert report["c-in-place"] == ["success", None], report["c-in-place"]
    x, y, w, h = SELECTION_BOX
    # The selection, the selected layer and the channels are as they were.
    assert report["c-kept"] == [[True, x, y, x + w, y + h], ["Photo"], 1]
    _new, photo = space.layers("c-in-place")
    original = content(*C_SIZE, seed=3, alpha=False).astype(int)
    after = photo["pixels"].astype(int)
    inside = np.zeros(C_SIZE[::-1], bool)
    inside[:18, 8:] = True
    assert np.array_equal(after[~inside], original[~inside])
    assert np.abs(after[inside] - original[inside]).mean() > 5


def test_a_style_layer_learns_only_from_its_layer_mask(session):
    space, report = session
    assert report["d"] == ["success", None], report["d"]
    new, _source = space.layers("d")
    assert new["name"] == "Photo (Painting)"
    # Half red, half blue: the whole would be purple; the mask shows only the red.
    assert tint(new["pixels"], np.ones((HEIGHT, WIDTH), bool)) > TINT


@pytest.mark.parametrize(
    "case, words",
    [
        ("no-selection", "There is no selection: select where the first style goes, or choose"),
        ("no-channel", "no region channel is chosen"),
        ("black-channel", "The region channel \u201cEmpty\u201d is black over the layer"),
        ("untouched", "The selection does not touch the layer \u201cPhoto\u201d"),
        ("foreign-channel", "\u201cForeign\u201d belongs to another image"),
        ("black-source", "The layer mask of the style layer \u201cMasked\u201d is black"),
        ("source-selection-away", "does not touch that layer"),
    ],
)
def test_a_region_that_cannot_work_is_a_message_and_changes_nothing(session, case, words):
    _space, report = session
    status, message = report[case]
    assert status == "execution-error", (case, message)
    assert words in message, (case, message)
    assert "Traceback" not in message
    assert report["unchanged"] == [True, True, True]
