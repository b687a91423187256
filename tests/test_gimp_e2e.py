"""The plug-in in real GIMP 3 (batch mode, gimp-console-3.0) against a real daemon with random
weights: new layers, alpha, offsets, selections, in place on several layers, last values, a
style from a layer, and the messages a user gets when something is wrong.

The cases against the module's daemon run in one GIMP session (GIMP's start is seconds, as
much as a small job), each test reading its part of what it wrote; the tests that need a daemon
of their own, or none, run their own batches.

GIMP 3 comes from tests/gimp/setup-gimp3.sh (a Debian 13 root on Debian 12 machines). Where it
cannot be set up these tests skip with the reason; in CI (CI set) they fail instead."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from daemon_support import DaemonProcess, style_png
from gimp_support import (
    GimpWorkspace,
    content,
    plugin_workspace,
    stop_daemon_in,
)
from memory_support import CAPPED_TILE_SIZE, capped_to_tiles

from neural_style_daemon.cli import main as neural_style
from neural_style_daemon.engine.devices import has_fast_bf16
from neural_style_gimp.arguments import BY_NAME

pytestmark = pytest.mark.slow

NEW_LAYER = "python-fu-neural-style"
IN_PLACE = "python-fu-neural-style-in-place"
# The processing size of the jobs whose size is not what is tested: each step costs in
# proportion to the pixels, and every result still comes back at its layer's size.
SIZE = 32
# The layers of the session's cases, as written for GIMP to load.
RGB = content(48, 40, alpha=False)
RGBA = content(40, 36, seed=3)
SELECTED = content(64, 48, seed=5, alpha=False)
LOWER, UPPER = content(40, 32, seed=1, alpha=False), content(30, 26, seed=2)
SELECTED_IN_PLACE = content(48, 40, seed=6)
PHOTO, PAINTING = content(36, 30, seed=4, alpha=False), content(50, 50, seed=9, alpha=False)
LINEAR = content(40, 30, seed=8)


@pytest.fixture(scope="module")
def workspace(gimp3):
    with plugin_workspace(gimp3) as space:
        yield space


@pytest.fixture(scope="module")
def daemon(workspace):
    process = DaemonProcess(workspace.runtime)
    try:
        process.wait_listening()
        yield process
    finally:
        process.terminate()


def run(workspace: GimpWorkspace, code: str, **kwargs) -> dict:
    done = workspace.run_batch(code, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workspace.report()


def style_path(workspace: GimpWorkspace) -> str:
    return workspace.gimp.inside(workspace.folder / "style.png")


def test_the_installer_finds_gimp_3s_python_ready(gimp3, tmp_path, capsys):
    assert (
        neural_style(
            ["install-gimp-plugin", "--gimp-dir", str(tmp_path), "--gimp-python", gimp3.python()]
        )
        == 0
    )
    out = capsys.readouterr()
    assert "has GIMP 3's gi and pyzmq" in out.out
    assert "warning" not in out.err


def session_code(space: GimpWorkspace) -> str:
    """The batch that runs every case against the module's daemon; each writes its result
    under its own name and dumps its image under its own tag."""
    style = style_path(space)
    (space.folder / "garbled.png").write_bytes(b"not a picture at all")
    garbled = space.gimp.inside(space.folder / "garbled.png")
    pixels = {
        name: space.write_pixels(name, image)
        for name, image in (
            ("rgb", RGB),
            ("rgba", RGBA),
            ("sel", SELECTED),
            ("lower", LOWER),
            ("upper", UPPER),
            ("sel-in-place", SELECTED_IN_PLACE),
            ("photo", PHOTO),
            ("art", PAINTING),
            ("float", LINEAR),
            ("plain", content(32, 32)),
        )
    }
    common = {"quality": "draft", "size": SIZE}
    return f"""
results = {{}}
pixels = {pixels!r}
common = {common!r}

# The menus: both procedures, their labels, image types and arguments.
for name in ({NEW_LAYER!r}, {IN_PLACE!r}):
    procedure = Gimp.get_pdb().lookup_procedure(name)
    results[name] = [procedure.get_menu_label(), procedure.get_menu_paths(),
                     procedure.get_image_types(), [arg.name for arg in procedure.get_arguments()]]

# A new layer above an opaque RGB layer with offsets.
image = Gimp.Image.new(80, 60, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", pixels["rgb"], 48, 40, (7, 5), alpha=False)
results["rgb"] = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style!r}, **common)
dump(image, FOLDER, "rgb")

# A new layer from an RGBA layer.
image = Gimp.Image.new(40, 36, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Cut-out", pixels["rgba"], 40, 36)
results["rgba"] = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style!r}, seed=7,
                                **common)
dump(image, FOLDER, "rgba")

# A new layer with a selection.
image = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", pixels["sel"], 64, 48, alpha=False)
image.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 8, 30, 20)
dump(image, FOLDER, "sel-before")
results["sel"] = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style!r}, **common)
dump(image, FOLDER, "sel-after")

# In place on two layers, one without alpha.
image = Gimp.Image.new(60, 50, Gimp.ImageBaseType.RGB)
a = add_layer(image, "Lower", pixels["lower"], 40, 32, (0, 0), alpha=False)
b = add_layer(image, "Upper", pixels["upper"], 30, 26, (20, 18))
results["inplace"] = run_procedure({IN_PLACE!r}, image, [a, b], style_file={style!r}, **common)
dump(image, FOLDER, "inplace")

# In place within a selection.
image = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", pixels["sel-in-place"], 48, 40, (8, 4))
image.select_rectangle(Gimp.ChannelOps.REPLACE, 20, 10, 24, 20)
results["sel-in-place"] = run_procedure({IN_PLACE!r}, image, [layer], style_file={style!r},
                                        **common)
dump(image, FOLDER, "sel-in-place")

# The style from a layer of another open image.
image = Gimp.Image.new(36, 30, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", pixels["photo"], 36, 30, alpha=False)
gallery = Gimp.Image.new(50, 50, Gimp.ImageBaseType.RGB)
art = add_layer(gallery, "Painting", pixels["art"], 50, 50, alpha=False)
results["from-layer"] = run_procedure({NEW_LAYER!r}, image, [layer], style_layer=art, **common)
dump(image, FOLDER, "from-layer")

# A linear-light float image.
image = Gimp.Image.new_with_precision(40, 30, Gimp.ImageBaseType.RGB,
                                      Gimp.Precision.FLOAT_LINEAR)
layer = add_layer(image, "Linear", pixels["float"], 40, 30)
results["float"] = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style!r}, **common)
dump(image, FOLDER, "float")

# Bad input: each a message, nothing added.
image = Gimp.Image.new(32, 32, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", pixels["plain"], 32, 32)
results["no_style"] = run_procedure({NEW_LAYER!r}, image, [layer])
gray = Gimp.Image.new(32, 32, Gimp.ImageBaseType.GRAY)
gray_layer = Gimp.Layer.new(gray, "Gray", 32, 32, Gimp.ImageType.GRAY_IMAGE, 100.0,
                            Gimp.LayerMode.NORMAL)
gray.insert_layer(gray_layer, None, 0)
results["grayscale"] = run_procedure({NEW_LAYER!r}, gray, [gray_layer], style_file={style!r})
indexed = Gimp.Image.new(32, 32, Gimp.ImageBaseType.INDEXED)
indexed_layer = Gimp.Layer.new(indexed, "Indexed", 32, 32, Gimp.ImageType.INDEXED_IMAGE, 100.0,
                               Gimp.LayerMode.NORMAL)
indexed.insert_layer(indexed_layer, None, 0)
results["palette"] = run_procedure({NEW_LAYER!r}, indexed, [indexed_layer], style_file={style!r})
group = Gimp.GroupLayer.new(image, "Group")
image.insert_layer(group, None, 0)
results["grouped"] = run_procedure({NEW_LAYER!r}, image, [group], style_file={style!r})
results["garbled"] = run_procedure({NEW_LAYER!r}, image, [layer], style_file={garbled!r})
results["bad-input-layers"] = len(image.get_layers())
report(FOLDER, **results)
"""


@pytest.fixture(scope="module")
def session(workspace, daemon):
    """The one GIMP batch of the cases above: (the workspace, its report). GIMP's start is
    seconds, as much as a small job: one start for all of them."""
    return workspace, run(workspace, session_code(workspace))


def test_both_procedures_are_in_the_filters_menu(session):
    _space, report = session
    assert report[NEW_LAYER][:3] == ["_Neural Style...", ["<Image>/Filters/Artistic"], "RGB*"]
    assert report[IN_PLACE][:2] == ["Neural Style (_in place)...", ["<Image>/Filters/Artistic"]]
    for name in (NEW_LAYER, IN_PLACE):
        assert report[name][3] == ["run-mode", "image", "drawables", *BY_NAME]


def test_new_layer_above_an_rgb_layer_with_offsets(session):
    space, report = session
    assert report["rgb"] == ["success", None], report["rgb"]
    new, source = space.layers("rgb")
    assert new["name"] == "Photo (style)"
    assert (new["width"], new["height"], new["offsets"]) == (48, 40, [7, 5])
    assert not new["mask"]
    assert np.array_equal(source["pixels"], RGB)  # the source is left alone
    changed = np.abs(new["pixels"][..., :3].astype(int) - RGB[..., :3]).mean()
    assert changed > 5, f"the new layer barely differs from its source ({changed:.2f})"
    assert (new["pixels"][..., 3] == 255).all()  # an opaque source gives an opaque result


def test_new_layer_keeps_the_alpha_of_an_rgba_layer(session):
    space, report = session
    assert report["rgba"] == ["success", None], report["rgba"]
    new, _source = space.layers("rgba")
    assert np.array_equal(new["pixels"][..., 3], RGBA[..., 3])
    visible = RGBA[..., 3] > 0
    assert np.abs(new["pixels"][visible, :3].astype(int) - RGBA[visible, :3]).mean() > 5


def test_a_selection_limits_the_change_to_it(session):
    space, report = session
    assert report["sel"] == ["success", None], report["sel"]
    new, _source = space.layers("sel-after")
    assert new["mask"]
    before = space.composite("sel-before", 64, 48).astype(int)
    after = space.composite("sel-after", 64, 48).astype(int)
    inside = np.zeros((48, 64), bool)
    inside[8:28, 10:40] = True
    assert np.array_equal(after[~inside], before[~inside])
    assert np.abs(after[inside] - before[inside]).mean() > 5


def test_in_place_changes_every_selected_layer_with_or_without_alpha(session):
    space, report = session
    assert report["inplace"] == ["success", None], report["inplace"]
    top, bottom = space.layers("inplace")
    assert [top["name"], bottom["name"]] == ["Upper", "Lower"]  # no layer added
    for layer, original in ((top, UPPER), (bottom, LOWER)):
        assert np.array_equal(layer["pixels"][..., 3], original[..., 3])
        visible = original[..., 3] > 0
        assert np.abs(layer["pixels"][visible, :3].astype(int) - original[visible, :3]).mean() > 5


def test_in_place_with_a_selection_changes_only_the_selected_pixels(session):
    space, report = session
    assert report["sel-in-place"] == ["success", None], report["sel-in-place"]
    (layer,) = space.layers("sel-in-place")
    inside = np.zeros((40, 48), bool)
    inside[10 - 4 : 30 - 4, 20 - 8 : 44 - 8] = True  # the selection in the layer's coordinates
    after = layer["pixels"].astype(int)
    assert np.array_equal(after[~inside], SELECTED_IN_PLACE[~inside])
    visible = inside & (SELECTED_IN_PLACE[..., 3] > 0)
    assert np.abs(after[visible, :3] - SELECTED_IN_PLACE[visible, :3]).mean() > 5


def test_style_from_a_layer_of_another_open_image(session):
    space, report = session
    assert report["from-layer"] == ["success", None], report["from-layer"]
    new, _source = space.layers("from-layer")
    assert new["name"] == "Photo (Painting)"
    assert np.abs(new["pixels"][..., :3].astype(int) - PHOTO[..., :3]).mean() > 5


def test_a_high_precision_image_works(session):
    space, report = session
    assert report["float"] == ["success", None], report["float"]
    new, source = space.layers("float")
    # Pixels travel as 8-bit sRGB; float storage keeps them, so alpha survives exactly.
    assert np.array_equal(new["pixels"][..., 3], source["pixels"][..., 3])
    visible = LINEAR[..., 3] > 0
    assert np.abs(new["pixels"][visible, :3].astype(int) - LINEAR[visible, :3]).mean() > 5


def test_bad_input_gets_a_message_and_changes_nothing(session):
    _space, report = session
    assert report["no_style"][0] == "execution-error"
    assert "No style chosen" in report["no_style"][1]
    for case, words in (
        ("grayscale", "this one is grayscale"),
        ("palette", "this one is indexed"),
        ("grouped", "is a layer group"),
        ("garbled", "could not use an image"),
    ):
        status, message = report[case]
        assert status == "execution-error", (case, message)
        assert words in message, (case, message)
    assert (
        report["bad-input-layers"] == 2
    )  # the layer and the group: nothing added by the failed runs


def test_out_of_memory_retries_smaller_or_says_to_choose_a_smaller_size(workspace, monkeypatch):
    # Every job's first two attempts: the one with a shorter L-BFGS history runs out too.
    monkeypatch.setenv("NEURAL_STYLE_FAULTS", "oom_at_step=1,oom_attempts=2")
    runtime = workspace.folder / "oom-run"
    daemon = DaemonProcess(runtime, "--oom-min-size", "32")
    try:
        daemon.wait_listening()
        done = workspace.run_batch(
            f"""
image = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
big = add_layer(image, "Big", {workspace.write_pixels("oom-big", content(64, 48))!r}, 64, 48)
small = add_layer(image, "Small", {workspace.write_pixels("oom-small", content(32, 24))!r},
                  32, 24)
retried = run_procedure({NEW_LAYER!r}, image, [big], style_file={style_path(workspace)!r},
                        quality="draft")
failed = run_procedure({NEW_LAYER!r}, image, [small], style_file={style_path(workspace)!r},
                       quality="draft")
report(FOLDER, retried=retried, failed=failed, layers=len(image.get_layers()))
""",
            runtime,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        daemon.terminate()
    report = workspace.report()
    assert report["retried"] == ["success", None], report
    output = done.stdout + done.stderr
    assert "Neural Style: out of memory at 64 px: retried with a shorter L-BFGS history" in output
    assert "Neural Style: out of memory at 64 px: retried at 45 px" in output
    status, message = report["failed"]
    assert status == "execution-error"
    assert "ran out of memory" in message and "smaller processing size" in message
    assert report["layers"] == 3  # the retried job's layer only


def test_a_layer_too_large_for_a_capped_daemon_whole_is_done_at_its_size_in_tiles(
    workspace, monkeypatch
):
    # Wide enough for two 256 px tiles and still too large to fit whole (capped_to_tiles checks
    # that); 32 px high: the job took 43 s at 320 x 96 on a busy 2-core machine, 12 s so.
    size = (320, 32)
    cap = capped_to_tiles(size, has_fast_bf16(torch.device("cpu"))) / 2**30
    runtime = workspace.folder / "capped-run"
    daemon = DaemonProcess(runtime, "--max-memory", f"{cap:.6f}")
    pixels = content(*size, alpha=False)
    try:
        daemon.wait_listening()
        done = workspace.run_batch(
            f"""
image = Gimp.Image.new({size[0]}, {size[1]}, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", {workspace.write_pixels("capped", pixels)!r}, {size[0]},
                  {size[1]}, alpha=False)
status, message = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style_path(workspace)!r},
                                quality="draft", strength=10.0, size={size[0]})
dump(image, FOLDER, "capped")
report(FOLDER, status=status, message=message)
""",
            runtime,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    finally:
        daemon.terminate()
    report = workspace.report()
    assert report["status"] == "success", report["message"]
    assert f"evaluating it in {CAPPED_TILE_SIZE} px tiles" in done.stdout + done.stderr
    new, source = workspace.layers("capped")
    assert (new["width"], new["height"]) == size  # at the layer's size, not shrunk
    assert np.array_equal(source["pixels"], pixels)
    changed = np.abs(new["pixels"][..., :3].astype(int) - pixels[..., :3]).mean()
    assert changed > 1, f"the new layer barely differs from its source ({changed:.2f})"


def test_the_plugin_starts_the_daemon_when_none_runs(gimp3):
    """A user's first run: no daemon, so the plug-in starts one the way the installer recorded
    (this installation's Python, bound into GIMP's root where there is one) and uses it."""
    space = GimpWorkspace(gimp3)
    runtime = space.folder / "first-run"
    runtime.mkdir(mode=0o700)
    repository = Path(__file__).resolve().parents[1]
    try:
        assert (
            neural_style(
                [
                    "install-gimp-plugin",
                    "--gimp-dir",
                    str(space.gimp_dir),
                    "--gimp-python",
                    gimp3.python(),
                    "--daemon-options",
                    "--weights random --device cpu",
                ]
            )
            == 0
        )
        (space.folder / "style.png").write_bytes(style_png(48, 48))
        with gimp3.sharing(repository, Path(sys.prefix), Path(sys.base_prefix)):
            try:
                report = run(
                    space,
                    f"""
image = Gimp.Image.new(40, 30, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", {space.write_pixels("first", content(40, 30))!r}, 40, 30)
status, message = run_procedure({NEW_LAYER!r}, image, [layer], quality="draft", size={SIZE},
                                style_file={gimp3.inside(space.folder / "style.png")!r})
report(FOLDER, status=status, message=message, layers=len(image.get_layers()))
""",
                    runtime=runtime,
                )
            finally:
                started = stop_daemon_in(runtime / "neural-style" / "daemon.json")
    finally:
        space.remove()
    assert report["status"] == "success", report["message"]
    assert report["layers"] == 2
    assert started, "no daemon was started"


def test_a_daemon_that_cannot_be_started_is_a_clear_error(workspace, tmp_path):
    settings = workspace.plugin_dir / "daemon.json"
    recorded = settings.read_text()
    settings.write_text(
        json.dumps(
            {"start_command": ["/nonexistent/python3", "-m", "neural_style_daemon.cli", "start"]}
        )
    )
    empty = workspace.folder / "no-daemon"
    empty.mkdir(mode=0o700)
    try:
        report = run(
            workspace,
            f"""
image = Gimp.Image.new(32, 32, Gimp.ImageBaseType.RGB)
layer = add_layer(image, "Photo", {workspace.write_pixels("alone", content(32, 32))!r}, 32, 32)
status, message = run_procedure({NEW_LAYER!r}, image, [layer], style_file={style_path(workspace)!r})
report(FOLDER, status=status, message=message, layers=len(image.get_layers()))
""",
            runtime=empty,
        )
    finally:
        settings.write_text(recorded)
    assert report["status"] == "execution-error"
    assert "cannot be started" in report["message"]
    assert "/nonexistent/python3" in report["message"]
    assert report["layers"] == 1
