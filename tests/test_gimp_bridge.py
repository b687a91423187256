"""The plug-in's bridge, for a GIMP whose Python cannot import pyzmq: the real bridge process
(`python -m neural_style_gimp.bridge`) over real pipes, against a real daemon with random
weights; a job's region masks by the bridge and by the direct link alike. The same bridge
inside real GIMP 3 is in test_gimp_e2e_bridge.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from daemon_support import DaemonProcess, content_image, style_png, wait_until

from neural_style_gimp import bridge_pipe as pipe
from neural_style_gimp.bridge_client import BridgeLink
from neural_style_gimp.daemon_link import DirectLink
from neural_style_gimp.errors import PluginError
from neural_style_gimp.processes import (
    FLATPAK_GRANT,
    clean_environment,
    flatpak_advice,
    host_command,
    in_flatpak,
)
from neural_style_gimp.progress import ProgressReport
from neural_style_gimp.regions import StyleRegion, region_masks
from neural_style_protocol.codec import decode, encode
from neural_style_protocol.images import RawImage
from neural_style_protocol.limits import DEFAULT_LIMITS
from neural_style_protocol.messages import MessageType, Result, Submit, new_job_id
from neural_style_protocol.params import JobParams

BRIDGE = [sys.executable, "-m", "neural_style_gimp.bridge"]
START = [sys.executable, "-m", "neural_style_daemon.cli", "start", "--weights", "random"]
START += ["--device", "cpu"]
# Importing this `zmq` fails as a pyzmq built for another interpreter does.
BROKEN_ZMQ = 'raise ImportError("DLL load failed while importing _zmq: built for another Python")'


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return folder


@pytest.fixture
def daemon(runtime):
    process = DaemonProcess(runtime, "--client-timeout", "120")
    try:
        process.wait_listening()
        yield process
    finally:
        process.terminate()


@pytest.fixture
def gimp_pythonpath(tmp_path, monkeypatch):
    """What GIMP's bundles do: PYTHONPATH set for GIMP's own Python, here to a folder whose
    `zmq` cannot be imported. Whatever the plug-in starts must not inherit it."""
    poison = tmp_path / "gimp-python"
    (poison / "zmq").mkdir(parents=True)
    (poison / "zmq" / "__init__.py").write_text(BROKEN_ZMQ + "\n")
    monkeypatch.setenv("PYTHONPATH", str(poison))
    return poison


def test_a_job_through_the_bridge_has_progress_layers_and_the_daemons_messages(daemon):
    shown: list[tuple[str, float]] = []
    with BridgeLink.open(BRIDGE, "", None, lambda *args: shown.append(args)) as link:
        assert link.device == "cpu"
        image, pixels = content_image(24, 20)
        report = ProgressReport(2)
        report.next_layer(1)
        result = link.stylize(
            image, [style_png()], JobParams(iterations=3), report, lambda *a: shown.append(a)
        )
        assert isinstance(result, Result) and not result.cancelled
        out = np.frombuffer(result.image.data, np.uint8).reshape(20, 24, 4)
        assert np.array_equal(out[..., 3], pixels[..., 3])
        assert not np.array_equal(out[..., :3], pixels[..., :3])
        texts = [text for text, _ in shown]
        assert any(text.startswith("Layer 2/2: Neural style: scale 1/1, step") for text in texts)
        fractions = [fraction for _, fraction in shown]
        assert fractions == sorted(fractions) and fractions[0] >= 0.5 and fractions[-1] < 1.0
        assert report.fraction == fractions[-1]
        # The daemon's refusal comes back as the plug-in's message, and the bridge goes on.
        with pytest.raises(PluginError, match="could not use an image"):
            link.stylize(
                image, [b"not an image"], JobParams(iterations=1), ProgressReport(), ignore
            )
        again = link.stylize(
            image, [style_png()], JobParams(iterations=1), ProgressReport(), ignore
        )
        assert again.image.width == 24
        process = link._process
    assert process.returncode == 0  # closing its input ended it


def test_the_bridge_starts_the_daemon_when_none_runs(runtime):
    shown: list[tuple[str, float]] = []
    try:
        with BridgeLink.open(BRIDGE, "", START, lambda *args: shown.append(args)) as link:
            assert "starting the style daemon" in shown[0][0]
            assert link.device == "cpu"
    finally:
        _stop_daemon(runtime)


def test_without_a_daemon_or_a_way_to_start_one_the_message_says_what_to_do(runtime):
    with pytest.raises(PluginError, match=r"No style daemon is running.*neural-style start"):
        BridgeLink.open(BRIDGE, "", None)
    gone = ["/nonexistent/python3", "-m", "neural_style_daemon.cli", "start"]
    with pytest.raises(PluginError, match="cannot be started: /nonexistent/python3 does not"):
        BridgeLink.open(BRIDGE, "", gone)


@pytest.mark.slow
def test_closing_the_bridges_input_mid_job_cancels_the_job_and_ends_the_bridge(daemon):
    """GIMP ends the plug-in when the user cancels: the bridge's input closes. The daemon's
    client timeout is 120 s here, so a job stopped within seconds was cancelled by the bridge."""
    bridge = subprocess.Popen(
        BRIDGE, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=clean_environment()
    )
    try:
        pipe.write_message(bridge.stdin, pipe.OPEN, {"connection_file": "", "start_command": None})
        header, _ = pipe.read_message(bridge.stdout)
        assert header["kind"] == pipe.READY, header
        image, _ = content_image(160, 128)
        body, buffers = encode(
            Submit(new_job_id(), image, (style_png(),), JobParams(iterations=5000))
        )
        pipe.write_message(
            bridge.stdin, pipe.STYLIZE, {"layer": 0, "layers": 1, "message": body}, buffers
        )
        while True:
            header, _ = pipe.read_message(bridge.stdout)
            assert header["kind"] == pipe.SHOW, header
            if "step 2/" in header["text"]:
                break
        with daemon.client() as client:
            assert client.status().running is not None
            closed = time.monotonic()
            bridge.stdin.close()
            assert bridge.wait(10) == 0
            wait_until(lambda: client.status().running is None, 10, "the job to be cancelled")
            assert time.monotonic() - closed < 20
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.wait()
        for stream in (bridge.stdin, bridge.stdout):
            stream.close()


@pytest.mark.slow
def test_a_bridge_that_cannot_start_or_fails_says_why(tmp_path):
    with pytest.raises(PluginError, match=r"bridge .* cannot be started: /nowhere/python3 does"):
        BridgeLink(["/nowhere/python3", "-m", "neural_style_gimp.bridge"])
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no module x\\n'); sys.exit(3)"]
    with pytest.raises(PluginError, match=r"failed: it ended \(exit code 3\): no module x"):
        BridgeLink.open(failing, "", None)
    # A bridge that writes something else than its messages is stopped, not trusted.
    chatty = [sys.executable, "-c", "print('hello'); import time; time.sleep(30)"]
    started = time.monotonic()
    with pytest.raises(PluginError, match="not JSON"):
        BridgeLink.open(chatty, "", None)
    assert time.monotonic() - started < 20


@pytest.mark.slow
def test_gimps_pythonpath_reaches_neither_the_bridge_nor_the_daemon(runtime, gimp_pythonpath):
    # In this environment a Python cannot import zmq: the plug-in's environment...
    probe = [sys.executable, "-c", "import zmq"]
    assert subprocess.run(probe, capture_output=True).returncode != 0
    # ...but the bridge and the daemon it starts get a clean one.
    try:
        with BridgeLink.open(BRIDGE, "", START) as link:
            assert link.device == "cpu"
            image, _ = content_image(16, 16)
            result = link.stylize(
                image, [style_png()], JobParams(iterations=1), ProgressReport(), ignore
            )
            assert not result.cancelled
    finally:
        _stop_daemon(runtime)


def test_the_plugin_takes_the_bridge_only_where_pyzmq_cannot_import(
    tmp_path, daemon, gimp_pythonpath
):
    """open_link in a Python like GIMP's bundled one (its zmq does not import), then in one whose
    zmq imports; with no bridge recorded, a message saying to reinstall."""
    script = """
import json, sys
from neural_style_gimp.link import open_link
from neural_style_gimp.settings import InstallSettings
from neural_style_gimp.errors import PluginError
bridge = tuple(json.loads(sys.argv[1]))
with open_link("", InstallSettings(("/unused",), bridge_command=bridge)) as link:
    print(type(link).__name__, link.device)
try:
    open_link("", InstallSettings(("/unused",)))
except PluginError as error:
    print(error)
"""
    args = [sys.executable, "-c", script, json.dumps(BRIDGE)]
    bundled = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert bundled.returncode == 0, bundled.stderr
    lines = bundled.stdout.splitlines()
    assert lines[0] == "BridgeLink cpu"
    assert "cannot import pyzmq (ImportError: DLL load failed" in lines[1]
    assert "neural-style install-gimp-plugin" in lines[1]
    system = subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=clean_environment()
    )
    assert system.returncode == 0, system.stderr
    assert system.stdout.splitlines()[0] == "DirectLink cpu"


def test_the_clean_environment_drops_only_what_steers_a_python():
    environ = {
        "PYTHONPATH": "/gimp/lib/python3.12",
        "PYTHONHOME": "/gimp",
        "__PYVENV_LAUNCHER__": "/gimp/bin/python",
        "PATH": "/usr/bin",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "PYTHONIOENCODING": "utf-8",
    }
    assert clean_environment(environ) == {
        "PATH": "/usr/bin",
        "XDG_RUNTIME_DIR": "/run/user/1000",
        "PYTHONIOENCODING": "utf-8",
    }


def test_inside_the_flatpak_the_bridge_runs_on_the_host(tmp_path, monkeypatch):
    info = tmp_path / ".flatpak-info"
    assert not in_flatpak(str(info))
    info.write_text("[Application]\nname=org.gimp.GIMP\n")
    assert in_flatpak(str(info))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert host_command(BRIDGE, sandboxed=False) == BRIDGE
    assert host_command(BRIDGE, sandboxed=True) == [
        "flatpak-spawn",
        "--host",
        "--watch-bus",
        "--env=XDG_RUNTIME_DIR=/run/user/1000",
        *BRIDGE,
    ]
    assert flatpak_advice(sandboxed=False) == ""
    assert FLATPAK_GRANT in flatpak_advice(sandboxed=True)
    # A failure to start it there names the permission to grant.
    with pytest.raises(PluginError, match="flatpak override --user --talk-name"):
        BridgeLink(["/nowhere/python3"], sandboxed=True)


def test_pipe_messages_round_trip_and_damage_is_named():
    stream = io.BytesIO()
    pipe.write_message(stream, pipe.SHOW, {"text": "a\nb", "fraction": 0.5}, [b"xy", b""])
    data = stream.getvalue()
    header, buffers = pipe.read_message(io.BytesIO(data))
    assert header == {"kind": "show", "text": "a\nb", "fraction": 0.5} and buffers == [b"xy", b""]
    assert pipe.read_message(io.BytesIO(b"")) is None
    for damaged, words in (
        (data[:-1], "input ended 1 bytes into a 2-byte buffer"),
        (b"not json\n", "not JSON"),
        (b'{"kind": "show"}\n', "lacks its kind or its buffer sizes"),
        (b'{"kind": "show", "buffers": [-1]}\n', "a buffer size of -1 bytes"),
        (b'{"kind": "show", "buffers": [1e400]}\n', "a buffer size of"),
        (b'{"kind": "show"', "cut off"),
        (b"[1, 2]\n", "not a JSON object"),
    ):
        with pytest.raises(pipe.PipeBroken, match=words):
            pipe.read_message(io.BytesIO(damaged))


def left_half(width: int, height: int) -> bytes:
    return (b"\xff" * (width // 2) + b"\0" * (width - width // 2)) * height


def test_the_bridges_pipe_carries_a_jobs_masks_byte_for_byte():
    image, _ = content_image(24, 20)
    masks = region_masks(StyleRegion.SELECTION, left_half(24, 20), 24, 20, 2)
    sources = (None, RawImage(left_half(48, 48), 48, 48, 1))
    job = Submit(
        new_job_id(),
        image,
        (style_png(), style_png(seed=2)),
        style_masks=masks,
        style_source_masks=sources,
    )
    body, buffers = encode(job)
    stream = io.BytesIO()
    pipe.write_message(stream, pipe.STYLIZE, {"layer": 0, "layers": 1, "message": body}, buffers)
    header, read = pipe.read_message(io.BytesIO(stream.getvalue()))
    arrived = decode(MessageType.SUBMIT, header["message"], read, DEFAULT_LIMITS)
    assert isinstance(arrived, Submit)
    assert arrived.style_masks == masks and arrived.style_source_masks == sources


@pytest.mark.slow
def test_region_masks_reach_the_daemon_by_the_bridge_and_the_direct_link(daemon):
    image, _ = content_image(24, 20)
    styles = [style_png(), style_png(seed=2)]
    masks = region_masks(StyleRegion.SELECTION, left_half(24, 20), 24, 20, 2)
    source = RawImage(left_half(48, 48), 48, 48, 1)
    quick = JobParams(iterations=2)
    with BridgeLink.open(BRIDGE, "", None) as bridged, DirectLink.open("", None) as direct:
        for link in (bridged, direct):
            plain = link.stylize(image, styles, quick, ProgressReport(), ignore)
            masked = link.stylize(
                image,
                styles,
                quick,
                ProgressReport(),
                ignore,
                style_masks=masks,
                style_source_masks=(source, None),
            )
            assert not masked.cancelled
            assert bytes(masked.image.data) != bytes(plain.image.data), type(link).__name__
            # Only the daemon, having decoded the style, can measure a source mask against it:
            # its words for a wrong one show that the mask crossed.
            with pytest.raises(PluginError, match="style source mask 1 is 9x7; style image 1"):
                link.stylize(
                    image,
                    styles,
                    quick,
                    ProgressReport(),
                    ignore,
                    style_source_masks=(RawImage(bytes(63), 9, 7, 1), None),
                )


@pytest.mark.slow
def test_a_sequence_comes_back_frame_by_frame_by_the_bridge_and_the_direct_link(daemon):
    frames = [content_image(24, 20, seed=seed)[0] for seed in range(3)]
    quick = JobParams(iterations=2)
    with BridgeLink.open(BRIDGE, "", None) as bridged, DirectLink.open("", None) as direct:
        for link in (bridged, direct):
            shown: list[str] = []
            handed: list[tuple[int, RawImage]] = []
            result = link.stylize(
                frames[0],
                [style_png()],
                quick,
                ProgressReport(),
                lambda text, _fraction, shown=shown: shown.append(text),
                sequence=frames[1:],
                on_frame=lambda index, image, handed=handed: handed.append((index, image)),
            )
            name = type(link).__name__
            assert not result.cancelled and len(result.images) == 3, name
            # Each frame as soon as it was done, byte for byte the result's.
            assert [index for index, _ in handed] == [0, 1, 2], name
            assert [image for _, image in handed] == list(result.images), name
            assert any(text.startswith("Neural style: frame 3/3, step") for text in shown), name


@pytest.mark.slow
def test_live_images_come_back_by_the_bridge_and_the_direct_link(daemon):
    image, pixels = content_image(24, 20)
    params = JobParams(iterations=20, optimizer="adam", live_interval=0.1)
    with BridgeLink.open(BRIDGE, "", None) as bridged, DirectLink.open("", None) as direct:
        for link in (bridged, direct):
            live: list[RawImage] = []
            result = link.stylize(
                image, [style_png()], params, ProgressReport(), ignore, on_live=live.append
            )
            name = type(link).__name__
            assert not result.cancelled and live, name
            first = np.frombuffer(live[0].data, np.uint8).reshape(20, 24, 4)
            assert np.array_equal(first[..., 3], pixels[..., 3]), name


def ignore(*_shown: object) -> None:
    pass


def _stop_daemon(runtime) -> None:
    """Stop the daemon `start` left running in `runtime`, if any."""
    connection = runtime / "neural-style" / "daemon.json"
    if connection.exists():
        subprocess.run(
            [sys.executable, "-m", "neural_style_daemon.cli", "stop"],
            env=clean_environment(),
            capture_output=True,
            timeout=60,
        )


@pytest.mark.slow
def test_the_daemons_warnings_cross_the_bridge(runtime, monkeypatch):
    # The first attempt runs out of memory; the daemon retries and says so in the result.
    monkeypatch.setenv("NEURAL_STYLE_FAULTS", "oom_at_step=1,oom_attempts=1")
    daemon = DaemonProcess(runtime)
    try:
        daemon.wait_listening()
        with BridgeLink.open(BRIDGE, "", None) as link:
            image, _ = content_image(64, 48)
            result = link.stylize(
                image, [style_png()], JobParams(iterations=2), ProgressReport(), ignore
            )
        assert any("out of memory at 64 px: retried" in warning for warning in result.warnings)
    finally:
        daemon.terminate()
