"""What a run leaves in real GIMP 3 (issue 18): the new layer appears at once and takes the result
so far as the job runs, so that a plug-in ended mid-job (as GIMP ends it on a cancel) leaves the
layer as far as the job got, and the daemon cancels the job; a result layer carries the settings
that made it as a parasite, the XCF keeps it, and "Neural Style (run again)" on the reopened
layer makes the same result again; in place too; a moved style file and a layer that no run
made are messages. Random weights: the mechanics, not the look.

One GIMP session runs every case; each test reads its own part of what the session wrote. GIMP
3 comes from tests/gimp/setup-gimp3.sh; where it cannot be set up these tests skip with the
reason, in CI they fail."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from daemon_support import DaemonProcess, wait_until
from gimp_support import GIMP_TIMEOUT, GimpWorkspace, content, plugin_workspace, processes_running

pytestmark = pytest.mark.slow

NEW_LAYER = "python-fu-neural-style"
IN_PLACE = "python-fu-neural-style-in-place"
RUN_AGAIN = "python-fu-neural-style-run-again"
WIDTH, HEIGHT = 48, 40
CHOSEN = {"quality": "draft", "size": 32, "strength": 80.0, "seed": 3}


def session_code(space: GimpWorkspace, slow_daemon: str) -> str:
    style = space.gimp.inside(space.folder / "style.png")
    moved = space.folder / "moved.png"
    moved.write_bytes((space.folder / "style.png").read_bytes())
    photo = space.write_pixels("photo", content(WIDTH, HEIGHT, seed=8))
    xcf = space.gimp.inside(space.folder / "kept.xcf")
    moved_inside = str(space.gimp.inside(moved))
    return f"""
from gi.repository import Gio
results = {{}}
def kept(layer):
    parasite = layer.get_parasite("neural-style-settings")
    return None if parasite is None else json.loads(bytes(parasite.get_data()))

# (a) A new layer, saved in an XCF, reopened, and run again.
image = Gimp.Image.new({WIDTH}, {HEIGHT}, Gimp.ImageBaseType.RGB)
photo = add_layer(image, "Photo", {photo!r}, {WIDTH}, {HEIGHT})
results["a"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={style!r}, **{CHOSEN!r})
result = image.get_layers()[0]
results["a-kept"] = kept(result)
results["a-photo-tattoo"] = photo.get_tattoo()
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path({xcf!r}), None)
reopened = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path({xcf!r}))
result = reopened.get_layers()[0]
results["a-reopened-kept"] = kept(result)
results["a-again"] = run_procedure({RUN_AGAIN!r}, reopened, [result])
dump(reopened, FOLDER, "a")

# (b) In place, then in place again from the settings the layer keeps.
image = Gimp.Image.new({WIDTH}, {HEIGHT}, Gimp.ImageBaseType.RGB)
photo = add_layer(image, "Photo", {photo!r}, {WIDTH}, {HEIGHT})
results["b"] = run_procedure({IN_PLACE!r}, image, [photo], style_file={moved_inside!r},
                             **{CHOSEN!r})
results["b-kept"] = kept(photo)
dump(image, FOLDER, "b-once")
results["b-again"] = run_procedure({RUN_AGAIN!r}, image, [photo])
dump(image, FOLDER, "b-twice")

# Refusals: the style file gone, a layer no run made. Nothing may change.
os.remove({moved_inside!r})
results["moved"] = run_procedure({RUN_AGAIN!r}, image, [photo])
plain = add_layer(image, "Plain", {photo!r}, {WIDTH}, {HEIGHT})
results["plain"] = run_procedure({RUN_AGAIN!r}, image, [plain])
results["refusals-layers"] = len(image.get_layers())

# (c) Last, on a daemon whose steps are slow: the test ends the plug-in mid-job.
image = Gimp.Image.new({WIDTH}, {HEIGHT}, Gimp.ImageBaseType.RGB)
photo = add_layer(image, "Photo", {photo!r}, {WIDTH}, {HEIGHT})
report(FOLDER, **results)  # what came before, in case this case goes wrong
results["c"] = run_procedure({NEW_LAYER!r}, image, [photo], style_file={style!r},
                             connection_file={slow_daemon!r}, **{CHOSEN!r})
results["c-kept"] = kept(image.get_layers()[0])
dump(image, FOLDER, "c")
report(FOLDER, **results)
"""


@pytest.fixture(scope="module")
def session(gimp3):
    """The one GIMP session: (the workspace, its report, the seconds the slow daemon took to
    drop its job once the plug-in had gone)."""
    with plugin_workspace(gimp3) as space, pytest.MonkeyPatch.context() as patch:
        daemon = DaemonProcess(space.runtime)
        patch.setenv("NEURAL_STYLE_FAULTS", "slow_steps=0.3")
        slow = DaemonProcess(space.folder / "slow-run")
        try:
            daemon.wait_listening()
            slow.wait_listening()
            code = session_code(space, space.gimp.inside(slow.connection_file))
            batch = subprocess.Popen(
                space.batch_command(code),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            try:
                # This workspace's plug-in only: other tests' GIMPs may be running.
                plugin = space.gimp.inside(space.plugin_dir / "neural-style.py")
                dropped = end_plugin_mid_job(slow, plugin)
            finally:
                output, _ = batch.communicate(timeout=GIMP_TIMEOUT)
        finally:
            daemon.terminate()
            slow.terminate()
        assert batch.returncode == 0, output[-3000:].decode(errors="replace")
        yield space, space.report(), dropped


def end_plugin_mid_job(slow: DaemonProcess, plugin_script: str) -> float:
    """Once the slow daemon's job is some steps in (a live image or two sent), SIGKILL the
    plug-in, as GIMP ends one whose progress is cancelled; then how long the daemon took to
    drop the job."""
    with slow.client() as client:

        def steps_in() -> bool:
            running = client.status().running
            return running is not None and running.iteration >= 4

        wait_until(steps_in, GIMP_TIMEOUT, "the slow daemon's job to run", interval=0.1)
        time.sleep(0.5)  # for the plug-in to write the latest live image
        (plugin,) = processes_running(plugin_script)
        os.kill(plugin, signal.SIGKILL)
        killed = time.monotonic()
        wait_until(lambda: client.status().running is None, 30, "the job to be dropped")
        return time.monotonic() - killed


def test_a_result_keeps_its_settings_through_the_xcf(session):
    space, report, _dropped = session
    assert report["a"] == ["success", None], report["a"]
    kept = report["a-kept"]
    assert kept["procedure"] == NEW_LAYER and kept["source"] == report["a-photo-tattoo"]
    assert {name: kept["values"][name] for name in CHOSEN} == CHOSEN
    (style,) = kept["styles"]
    data = (space.folder / "style.png").read_bytes()
    assert style["path"].endswith("/style.png") and style["name"] == "style"
    assert style["sha256"] == hashlib.sha256(data).hexdigest()
    assert report["a-reopened-kept"] == kept


def test_run_again_on_the_reopened_result_makes_the_same_result(session):
    space, report, _dropped = session
    assert report["a-again"] == ["success", None], report["a-again"]
    first, again, photo = space.layers("a")  # top first: the new one directly above the photo
    assert first["name"] == "Photo (style)"
    assert again["name"] == "Photo (style) #1"  # GIMP keeps layer names unique
    assert np.array_equal(photo["pixels"], content(WIDTH, HEIGHT, seed=8))
    difference = np.abs(again["pixels"].astype(int) - first["pixels"].astype(int)).mean()
    from_photo = np.abs(first["pixels"][..., :3].astype(int) - photo["pixels"][..., :3]).mean()
    assert difference < 1.0 < from_photo  # the same settings and seed: the same result


def test_run_again_in_place_stylises_the_layer_again(session):
    space, report, _dropped = session
    assert report["b"] == ["success", None] and report["b-again"] == ["success", None]
    assert report["b-kept"]["procedure"] == IN_PLACE
    (once,), (twice,) = space.layers("b-once"), space.layers("b-twice")
    assert np.array_equal(once["pixels"][..., 3], twice["pixels"][..., 3])
    assert np.abs(twice["pixels"][..., :3].astype(int) - once["pixels"][..., :3]).mean() > 1


def test_a_moved_style_or_a_layer_no_run_made_is_a_message(session):
    _space, report, _dropped = session
    status, message = report["moved"]
    assert status == "execution-error"
    assert "moved.png is missing (moved or deleted?): choose it again." in message
    status, message = report["plain"]
    assert status == "execution-error"
    assert "\u201cPlain\u201d carries no Neural Style settings" in message
    assert report["refusals-layers"] == 2  # the photo and the plain layer: nothing added
    assert json.dumps(report["b-kept"])  # the in-place record is plain JSON too


def test_the_new_layer_takes_the_result_so_far_and_a_cancel_leaves_it(session):
    space, report, dropped = session
    status, _message = report["c"]
    assert status == "calling-error"  # GIMP's word for a plug-in that ended mid-call
    live, photo = space.layers("c")  # the new layer is there, above the photo
    assert live["name"] == "Photo (style)"
    original = content(WIDTH, HEIGHT, seed=8)
    assert np.array_equal(photo["pixels"], original)
    assert np.array_equal(live["pixels"][..., 3], original[..., 3])
    # The result so far, not the photo it started as.
    assert np.abs(live["pixels"][..., :3].astype(int) - original[..., :3]).mean() > 1
    assert report["c-kept"]["procedure"] == NEW_LAYER  # it carries its settings already
    assert dropped < 5  # the daemon noticed at once, not after a client timeout
