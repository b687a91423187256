"""The plug-in's logic without GIMP: arguments to job parameters, style choices, naming,
progress text, PNG encoding, finding or starting the daemon, and the messages users get."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from daemon_support import DaemonProcess, content_image, style_png
from PIL import Image

from neural_style_gimp.arguments import (
    ARGUMENTS,
    AUTOMATIC_SIZE_ELSEWHERE,
    BY_NAME,
    CHOICE,
    DIALOG_LAYOUT,
    StyleChoice,
    choose_styles,
    job_params,
    processing_size,
    read_style_file,
    result_layer_name,
    style_name,
)
from neural_style_gimp.daemon_link import (
    check_layer_size,
    daemon_device,
    describe_failure,
    open_daemon,
    stylize,
)
from neural_style_gimp.errors import PluginError
from neural_style_gimp.png import encode_png
from neural_style_gimp.progress import ProgressReport
from neural_style_gimp.settings import InstallSettings, load_settings
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Accepted, Progress, Result
from neural_style_protocol.params import MIN_SIZE, ColorMode, JobParams, Preset
from neural_style_protocol.restart import Resubmitted

# ---- PNG ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_encoded_png_decodes_to_the_same_pixels(channels):
    pixels = np.random.default_rng(channels).integers(0, 256, (13, 17, channels), np.uint8)
    data = encode_png(pixels.tobytes(), 17, 13, channels)
    decoded = np.asarray(Image.open(io.BytesIO(data)))
    assert decoded.shape == pixels.shape
    assert np.array_equal(decoded, pixels)


def test_png_refuses_pixels_that_do_not_fit_the_size():
    with pytest.raises(ValueError, match="do not make a 4x4x4 image"):
        encode_png(b"\0" * 63, 4, 4)


# ---- arguments -----------------------------------------------------------------------------


def test_argument_table_matches_the_protocol():
    assert len(BY_NAME) == len(ARGUMENTS)
    assert [nick for nick, _ in BY_NAME["quality"].choices] == [p.value for p in Preset]
    assert [nick for nick, _ in BY_NAME["preserve-colors"].choices] == [c.value for c in ColorMode]
    for arg in ARGUMENTS:
        if arg.kind == CHOICE:
            assert arg.default in [nick for nick, _ in arg.choices]
        elif isinstance(arg.default, (int, float)):
            assert arg.low <= arg.default <= arg.high, arg.name
    # The defaults are the daemon's own.
    defaults = job_params({"style-file": "a.png"}, 4000, 3000, 1, "cpu")
    assert (defaults.preset, defaults.strength, defaults.preserve_colors, defaults.seed) == (
        JobParams().preset,
        JobParams().strength,
        JobParams().preserve_colors,
        JobParams().seed,
    )


def test_the_dialog_shows_every_argument_once():
    shown = [name for _title, names in DIALOG_LAYOUT for name in names]
    assert sorted(shown) == sorted(BY_NAME)


def test_choose_styles_in_order_file_or_layer():
    layer = object()
    chosen = choose_styles({"style-file": "/art/starry night.jpg", "second-style-layer": layer})
    assert chosen == [StyleChoice(path="/art/starry night.jpg"), StyleChoice(layer=layer)]
    assert choose_styles({"style-layer": layer}) == [StyleChoice(layer=layer)]


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "No style chosen"),
        ({"second-style-file": "b.png"}, "second style is chosen but no first one"),
        (
            {"style-file": "a.png", "style-layer": object()},
            "Both a file and a layer are chosen for the style",
        ),
        (
            {"style-file": "a.png", "second-style-file": "b.png", "second-style-layer": object()},
            "the second style",
        ),
    ],
)
def test_style_choices_that_cannot_run_say_why(values, message):
    with pytest.raises(PluginError, match=message):
        choose_styles(values)


def test_reading_a_style_file_names_the_problem(tmp_path):
    good = tmp_path / "style.png"
    good.write_bytes(b"bytes")
    assert read_style_file(str(good)) == b"bytes"
    with pytest.raises(PluginError, match=r"missing\.png does not exist"):
        read_style_file(str(tmp_path / "missing.png"))
    with pytest.raises(PluginError, match="is a folder"):
        read_style_file(str(tmp_path))


@pytest.mark.parametrize(
    "size, expected", [(4000, None), (5000, None), (3999, 3999), (512, 512), (1, MIN_SIZE)]
)
def test_processing_size_never_enlarges_the_layer(size, expected):
    assert processing_size(4000, 3000, size, "cpu") == expected
    assert processing_size(4000, 3000, size, "cuda:0 (NVIDIA H100 80GB HBM3)") == expected


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cuda:0 (NVIDIA H100 80GB HBM3)", None),
        ("cuda", None),
        ("cpu", AUTOMATIC_SIZE_ELSEWHERE),
        ("mps", AUTOMATIC_SIZE_ELSEWHERE),
    ],
)
def test_size_zero_is_chosen_for_the_daemons_device(device, expected):
    # On a CPU a full-size job takes minutes to hours: 0, the default, asks for less there;
    # on a GPU, the layer's full size (None), tiled by the daemon where it does not fit whole.
    assert AUTOMATIC_SIZE_ELSEWHERE < 4000
    assert BY_NAME["size"].default == 0
    assert "full size on an NVIDIA GPU" in BY_NAME["size"].blurb
    assert processing_size(4000, 3000, 0, device) == expected
    assert job_params({}, 3000, 4000, 1, device).size == expected
    # Never enlarged: a layer smaller than the automatic size is processed at its own.
    assert processing_size(300, 200, 0, device) is None


def test_job_params_from_the_dialog_values():
    params = job_params(
        {
            "quality": "best",
            "strength": 80.0,
            "size": 512,
            "preserve-colors": "luminance",
            "seed": 42,
            "second-style-share": 25.0,
        },
        2000,
        1000,
        2,
        "cpu",
    )
    assert params.preset is Preset.BEST
    assert params.strength == 80.0
    assert params.size == 512
    assert params.preserve_colors is ColorMode.LUMINANCE
    assert params.seed == 42
    assert params.style_weights == (75.0, 25.0)
    assert job_params({}, 100, 100, 1, "cpu").style_weights is None  # one style: no blend


@pytest.mark.parametrize(
    "values, message",
    [
        ({"second-style-share": 100.0}, "leaves nothing of the first style"),
        ({"second-style-share": 0.0}, "leaves nothing of the second style"),
        ({"quality": "ultra"}, "Invalid setting: params.preset"),
        ({"strength": 250.0}, "Invalid setting: params.strength"),
    ],
)
def test_bad_values_from_scripts_are_clear_errors(values, message):
    with pytest.raises(PluginError, match=message):
        job_params(values, 100, 100, 2, "cpu")


def test_layer_names_say_which_styles():
    assert style_name(StyleChoice(path="/x/The Starry Night.jpg")) == "The Starry Night"
    assert style_name(StyleChoice(path="/x/starry_night.jpg")) == "starry night"
    assert style_name(StyleChoice(layer=object()), "Painting") == "Painting"
    assert result_layer_name("Photo", ["Starry Night"]) == "Photo (Starry Night)"
    assert result_layer_name("Photo", ["A", "B"]) == "Photo (A + B)"
    long = result_layer_name("Photo", ["x" * 200])
    assert len(long) == 80 and long.endswith("\u2026")


# ---- progress ----------------------------------------------------------------------------


def progress(work_done: float, scale: int = 2, iteration: int = 5, eta: float | None = 75.0):
    return Progress("a" * 32, 1, scale, 3, iteration, 10, work_done, {"style": 1.0}, 2.0, eta)


def test_progress_text_and_fraction_over_two_layers():
    report = ProgressReport(layers=2)
    text = report.update(progress(0.5))
    assert text == ("Layer 1/2: Neural style: scale 2/3, step 5/10, about 1 min 15 s left")
    assert report.fraction == pytest.approx(0.25)
    report.update(progress(1.0, scale=3, iteration=10))
    assert report.fraction < 0.5  # held until the pixels are in
    report.next_layer(1)
    assert report.fraction == pytest.approx(0.5)
    assert report.update(progress(0.0, eta=None)).startswith("Layer 2/2:")
    assert report.fraction == pytest.approx(0.5)  # never moves back


def test_progress_text_names_the_tile_of_a_tiled_step():
    tiled = Progress("a" * 32, 1, 1, 1, 3, 10, 0.25, {}, 2.0, None, None, 5, 8)
    assert ProgressReport().update(tiled) == "Neural style: scale 1/1, step 3/10, tile 5/8"


def test_progress_text_for_queue_and_restart():
    report = ProgressReport()
    assert "waiting for 2 other jobs" in report.update(Accepted("a" * 32, 2))
    report.update(progress(0.6))
    assert "restarted" in report.update(Resubmitted("a" * 32, 1, "gone", "tcp://x:1", 9))
    assert report.fraction == 0.0
    assert report.update(object()) is None


# ---- messages ----------------------------------------------------------------------------


def test_out_of_memory_suggests_a_smaller_size():
    assert "smaller processing size" in describe_failure(ErrorCode.OUT_OF_MEMORY, "CUDA OOM")
    assert "queue is full" in describe_failure(ErrorCode.BUSY, "8 jobs")


# ---- settings and the daemon -------------------------------------------------------------


def test_settings_missing_damaged_and_good(tmp_path):
    assert load_settings(str(tmp_path)) is None
    (tmp_path / "daemon.json").write_text("{not json")
    with pytest.raises(PluginError, match="is damaged"):
        load_settings(str(tmp_path))
    (tmp_path / "daemon.json").write_text('{"start_command": ["/venv/bin/python", "-m", "x"]}')
    assert load_settings(str(tmp_path)).start_command == ("/venv/bin/python", "-m", "x")


@pytest.fixture
def no_daemon(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return runtime


def test_no_daemon_and_nothing_to_start_it_with(no_daemon, tmp_path):
    with pytest.raises(PluginError, match="install-gimp-plugin"):
        open_daemon("", None)
    with pytest.raises(PluginError, match=r"connection file .*elsewhere\.json does not answer"):
        open_daemon(str(tmp_path / "elsewhere.json"), None)
    with pytest.raises(PluginError, match="/gone/python3 does not exist"):
        open_daemon("", InstallSettings(("/gone/python3", "-m", "neural_style_daemon.cli")))
    failing = (
        sys.executable,
        "-c",
        "import sys; print('weights missing', file=sys.stderr); sys.exit(3)",
    )
    with pytest.raises(PluginError, match=r"exited with code 3\).*weights missing"):
        open_daemon("", InstallSettings(failing))


def test_the_recorded_command_starts_a_daemon_that_then_runs_a_job(no_daemon):
    command = (
        sys.executable,
        "-m",
        "neural_style_daemon.cli",
        "start",
        "--weights",
        "random",
        "--device",
        "cpu",
    )
    shown: list[tuple[str, float]] = []
    client = open_daemon("", InstallSettings(command), lambda *args: shown.append(args))
    try:
        assert "starting the style daemon" in shown[0][0]
        assert daemon_device(client) == "cpu"
        image, pixels = content_image(24, 20)
        result = stylize(
            client,
            image,
            [style_png()],
            JobParams(iterations=2),
            ProgressReport(),
            lambda *args: shown.append(args),
        )
        assert isinstance(result, Result) and not result.cancelled
        out = np.frombuffer(result.image.data, np.uint8).reshape(20, 24, 4)
        assert np.array_equal(out[..., 3], pixels[..., 3])
        fractions = [fraction for _text, fraction in shown[1:]]
        assert fractions == sorted(fractions) and fractions[-1] < 1.0
        assert any("scale 1/1, step" in text for text, _ in shown)
        # A broken style file comes back as the daemon's reason, not a traceback.
        with pytest.raises(PluginError, match="could not use an image"):
            stylize(
                client,
                image,
                [b"not an image"],
                JobParams(iterations=1),
                ProgressReport(),
                lambda *args: None,
            )
    finally:
        client.shutdown()
        client.close()


def test_layers_too_large_for_any_daemon_are_refused_before_sending():
    with pytest.raises(PluginError, match=r"9000 x 100 pixels.*at most 8192"):
        check_layer_size(9000, 100)
    check_layer_size(8192, 8192)
    assert "too large for the style daemon" in describe_failure(ErrorCode.TOO_LARGE, "x")


@pytest.mark.slow
def test_a_job_cancelled_elsewhere_is_reported_not_applied(tmp_path):
    daemon = DaemonProcess(tmp_path / "run")
    try:
        daemon.wait_listening()
        with daemon.client() as client, daemon.client() as other:
            image, _ = content_image(24, 20)

            def cancel_once_running(text: str, fraction: float) -> None:
                if "step" in text:  # running: cancel it from another client, as `stop` would
                    running = other.status().running
                    if running is not None:
                        other.cancel(running.job_id)

            with pytest.raises(PluginError, match="cancelled the job"):
                stylize(
                    client,
                    image,
                    [style_png()],
                    JobParams(iterations=10_000, optimizer="adam"),
                    ProgressReport(),
                    cancel_once_running,
                )
    finally:
        daemon.terminate()


@pytest.mark.slow
def test_a_daemon_gone_before_the_job_is_a_message_not_a_traceback(tmp_path):
    daemon = DaemonProcess(tmp_path / "run")
    try:
        daemon.wait_listening()
        with daemon.client() as client:
            assert daemon_device(client) == "cpu"
            daemon.terminate()
            with pytest.raises(PluginError, match=r"Lost the style daemon: no answer .* within"):
                daemon_device(client)  # waits out the client's request timeout (5 s)
    finally:
        daemon.terminate()


def test_plugin_folder_holds_the_launcher():
    launcher = Path(__import__("neural_style_gimp").__file__).parent / "neural-style.py"
    assert launcher.read_text().startswith("#!/usr/bin/env python3")
