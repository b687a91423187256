"""Animation frames in real GIMP 3 (issue 20): "Neural Style (frames)" takes an image's layers as
frames, bottom to top, into a new image (the animation untouched) or in place (a layer off the
canvas keeping its pixels there), and refuses what cannot be an animation before any change.
Random weights: the mechanics, not the look (docs/quality.md has that).

One GIMP session runs every case; each test reads its own part of what the session wrote. GIMP
3 comes from tests/gimp/setup-gimp3.sh; where it cannot be set up these tests skip with the
reason, in CI they fail."""

from __future__ import annotations

import numpy as np
import pytest
from gimp_support import GimpWorkspace, batch_session, content

pytestmark = pytest.mark.slow

FRAMES = "python-fu-neural-style-frames"
WIDTH, HEIGHT = 48, 40
NAMES = ("Frame 1 (100ms)", "Frame 2 (100ms)", "Frame 3 (100ms)")
# In (b), the middle frame is smaller and hangs off the canvas's right edge.
OFF_OFFSETS, OFF_SIZE = (24, 8), (40, 24)


def panning(frames: int = 3, step: int = 3) -> list[np.ndarray]:
    wide = content(WIDTH + step * frames, HEIGHT, seed=5)
    return [wide[:, i * step : i * step + WIDTH].copy() for i in range(frames)]


def session_code(space: GimpWorkspace) -> str:
    style = space.gimp.inside(space.folder / "style.png")
    frames = [space.write_pixels(f"frame-{i}", frame) for i, frame in enumerate(panning())]
    off = space.write_pixels("off", content(*OFF_SIZE, seed=6))
    common = {"style_file": style, "quality": "draft", "size": 32, "strength": 90.0}
    return f"""
results = {{}}
frames = {frames!r}
names = {list(NAMES)!r}
common = {common!r}
def animation(offsets=None):
    image = Gimp.Image.new({WIDTH}, {HEIGHT}, Gimp.ImageBaseType.RGB)
    for index, (name, path) in enumerate(zip(names, frames)):  # each on top: frame 1 at the bottom
        if index == 1 and offsets is not None:
            add_layer(image, name, {off!r}, {OFF_SIZE[0]}, {OFF_SIZE[1]}, offsets)
        else:
            add_layer(image, name, path, {WIDTH}, {HEIGHT})
    return image

def images():
    return {{image.get_id() for image in Gimp.get_images()}}

# (a) Into a new image: the animation stays as it was.
image = animation()
dump(image, FOLDER, "a-before")
before = images()
results["a"] = run_procedure({FRAMES!r}, image, [], frames_into="new-image", **common)
made = [i for i in Gimp.get_images() if i.get_id() not in before]
results["a-new-images"] = len(made)
dump(made[0], FOLDER, "a-new")
dump(image, FOLDER, "a-after")

# (b) In place, the middle frame smaller than the canvas and partly off it.
image = animation({OFF_OFFSETS})
dump(image, FOLDER, "b-before")
before = images()
results["b"] = run_procedure({FRAMES!r}, image, image.get_selected_layers(),
                             frames_into="in-place", **common)
results["b-new-images"] = len(images() - before)
dump(image, FOLDER, "b")

# Refusals, before any job: nothing may change.
before = images()
single = Gimp.Image.new({WIDTH}, {HEIGHT}, Gimp.ImageBaseType.RGB)
add_layer(single, "Only", frames[0], {WIDTH}, {HEIGHT})
results["one-layer"] = run_procedure({FRAMES!r}, single, [], **common)
grouped = animation()
group = Gimp.GroupLayer.new(grouped, "Group")
grouped.insert_layer(group, None, 0)
results["group"] = run_procedure({FRAMES!r}, grouped, [], **common)
results["no-style"] = run_procedure({FRAMES!r}, animation(), [], quality="draft")
results["refusals-made-images"] = len(images() - before) - 3  # the three test images
report(FOLDER, **results)
"""


@pytest.fixture(scope="module")
def session(gimp3):
    """The one GIMP session: (the workspace, its report)."""
    with batch_session(gimp3, session_code) as session:
        yield session


def changed(after: np.ndarray, before: np.ndarray) -> float:
    return float(np.abs(after[..., :3].astype(int) - before[..., :3].astype(int)).mean())


def test_the_layers_become_a_new_image_of_stylised_frames_in_order(session):
    space, report = session
    assert report["a"] == ["success", None], report["a"]
    assert report["a-new-images"] == 1
    new = space.layers("a-new")[::-1]  # bottom first: the animation's order
    assert [layer["name"] for layer in new] == list(NAMES)  # GIF export reads the timings
    originals = panning()
    for layer, original in zip(new, originals, strict=True):
        assert (layer["width"], layer["height"], layer["offsets"]) == (WIDTH, HEIGHT, [0, 0])
        assert np.array_equal(layer["pixels"][..., 3], original[..., 3])  # alpha kept
        assert changed(layer["pixels"], original) > 5
    assert not np.array_equal(new[0]["pixels"], new[1]["pixels"])
    # The animation itself is as it was.
    for after, before in zip(space.layers("a-after"), space.layers("a-before"), strict=True):
        assert after["name"] == before["name"]
        assert np.array_equal(after["pixels"], before["pixels"])


def test_in_place_each_frame_changes_and_off_the_canvas_stays(session):
    space, report = session
    assert report["b"] == ["success", None], report["b"]
    assert report["b-new-images"] == 0
    after, before = space.layers("b")[::-1], space.layers("b-before")[::-1]
    assert [layer["name"] for layer in after] == list(NAMES)
    for new, old in zip(after, before, strict=True):
        assert np.array_equal(new["pixels"][..., 3], old["pixels"][..., 3])
    assert changed(after[0]["pixels"], before[0]["pixels"]) > 5
    assert changed(after[2]["pixels"], before[2]["pixels"]) > 5
    middle_after, middle_before = after[1]["pixels"], before[1]["pixels"]
    on_canvas = WIDTH - OFF_OFFSETS[0]  # the layer's columns over the canvas
    assert changed(middle_after[:, :on_canvas], middle_before[:, :on_canvas]) > 5
    assert np.array_equal(middle_after[:, on_canvas:], middle_before[:, on_canvas:])


def test_what_cannot_be_an_animation_is_refused_and_changes_nothing(session):
    _space, report = session
    status, message = report["one-layer"]
    assert status == "execution-error" and "needs an animation" in message
    assert "has 1 layer:" in message
    status, message = report["group"]
    assert status == "execution-error" and "\u201cGroup\u201d is a layer group" in message
    status, message = report["no-style"]
    assert status == "execution-error" and "No style chosen" in message
    assert report["refusals-made-images"] == 0
