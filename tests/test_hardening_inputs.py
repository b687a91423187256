"""Bad images and parameters through `neural-style stylize` when a daemon does the work: each a
single clear line and exit code 2, the output file untouched and no temporary file left, the
daemon still serving afterwards. (The same inputs without a daemon are in test_cli.py; signed
but invalid messages straight to the daemon in test_daemon_server.py and the fuzz tests.)"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_support import QUICK, DaemonProcess, running_daemon, style_png
from hardening_support import assert_served
from test_cli import _png_claiming_size, write_image

from neural_style_daemon.cli import main
from neural_style_protocol.errors import DaemonTimeout
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import new_job_id

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]

MAX_SIDE = 512


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(
        tmp_path_factory.mktemp("runtime"), "--max-side", str(MAX_SIDE), idle_worker=True
    ) as process:
        yield process


def bad_inputs(folder: Path) -> dict[str, tuple[list[object], str]]:
    """Each case: the stylize words before -o, and what its one line must say. A code in
    brackets means the daemon itself refused it."""
    content = write_image(folder / "content.png", 61, 45)
    style = write_image(folder / "style.png", 64, 64, seed=1)
    truncated = folder / "truncated.png"
    truncated.write_bytes(content.read_bytes()[:200])
    text = folder / "notes.png"
    text.write_text("not an image")
    tiny = write_image(folder / "tiny.png", 1, 1)
    bomb = _png_claiming_size(folder / "bomb.png", 40000, 40000)
    wide = write_image(folder / "wide.png", MAX_SIDE + 88, 20)
    return {
        "truncated style": ([content, truncated], "truncated) (invalid_image)"),
        "text as style": ([content, text], "not an image format that can be read (invalid_image)"),
        "bomb as style": ([content, bomb], "a decompression bomb?) (invalid_image)"),
        "1x1 style": ([content, tiny], "style image 1 is 1x1"),
        "1x1 content": ([tiny, style], "content image is 1x1"),
        "content over the daemon's limit": (
            [wide, style],
            f"[1, {MAX_SIDE}], not {MAX_SIDE + 88} (invalid_image)",
        ),
        "size over the daemon's limit": (
            [content, style, "--size", "1000"],
            f"over the limit of {MAX_SIDE} (invalid_param)",
        ),
        "bomb as content": ([bomb, style], "megapixels"),
        "missing style": ([content, folder / "nope.png"], "file not found"),
        "blend weights for no style": (
            [content, style, "--style-weights", "1,2"],
            "2 style weights for 1 style images",
        ),
        "nan strength": ([content, style, "--strength", "nan"], "strength"),
        "too many iterations": ([content, style, "--iterations", "100000"], "iterations"),
    }


def test_bad_inputs_through_the_daemon_each_get_one_clear_line_and_nothing_written(
    daemon: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(daemon.runtime))  # `stylize` finds the daemon
    output = tmp_path / "existing.png"
    output.write_bytes(b"precious")
    cases = bad_inputs(tmp_path)
    for name, (words, expected) in cases.items():
        code = main(
            [
                "stylize",
                *map(str, words),
                "-o",
                str(output),
                "-q",
                *(["--iterations", "2"] if "--iterations" not in words else []),
            ]
        )
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (name, lines)
        assert len(lines) == 1 and lines[0].startswith("neural-style: error: "), (name, lines)
        assert expected in lines[0], (name, lines[0])
        assert output.read_bytes() == b"precious", name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert "Traceback" not in daemon.stderr()
    assert_served(daemon, "after-bad-inputs")
    for wrong in (["-o", str(tmp_path / "out.gif")], ["-o", str(tmp_path / "no" / "o.png")]):
        words = [str(tmp_path / "content.png"), str(tmp_path / "style.png"), *wrong]
        assert main(["stylize", *words, "-q", "--iterations", "2"]) == 2
        assert capsys.readouterr().err.startswith("neural-style: error: ")
    assert not (tmp_path / "out.gif").exists() and not (tmp_path / "no").exists()


def test_a_submit_the_daemon_drops_unread_ends_with_a_clear_error(daemon: DaemonProcess) -> None:
    """Pixels over the daemon's limits are dropped unanswered, by design, before anything is
    read (by ZeroMQ's message size cap, or before the signature check); the client must not
    wait for ever while the daemon's pongs keep coming."""
    side = MAX_SIDE + 100  # one frame of side*side*4 bytes: over the daemon's max_frame_bytes
    image = RawImage(bytes(side * side * 4), side, side, 4)
    with daemon.client() as client:
        started = time.monotonic()
        with pytest.raises(DaemonTimeout, match=r"did not acknowledge job \w+ within 1\.5 s"):
            client.submit(new_job_id(), image, [style_png()], QUICK, ack_timeout=1.5).result()
        assert time.monotonic() - started < 30  # bounded: not the inactivity timeout's loop
        client.ping(5.0)  # the same client still works
    assert_served(daemon, "after-dropped-submit")
