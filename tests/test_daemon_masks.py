"""Region masks through the daemon (issue 17): the worker hands them to the engine and turns a
source mask of the wrong size, or the engine's refusal, into a job error; a real daemon over
ZeroMQ runs a job with masks, answers bad ones with a clear error, and `neural-style stylize`
with --style-masks runs on it. Random weights, tiny images."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from daemon_support import (
    QUICK,
    DaemonProcess,
    alpha_of,
    content_image,
    daemon_env,
    read_all,
    running_daemon,
    style_png,
)
from PIL import Image
from test_cli_masks import write_mask
from test_layers import STYLIZE_WITHOUT_TORCH

from neural_style_daemon.cli import main
from neural_style_daemon.engine.stylize import StyleEngine
from neural_style_daemon.server.events import JobDone, JobFailed, RunJob, WorkerConfig
from neural_style_daemon.server.worker import JobRunner
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Error, Result

WIDTH, HEIGHT = 40, 32
STYLE_SIDE = 48  # style_png()'s size


def grey(width: int, height: int, left: int = 255, right: int = 0) -> RawImage:
    """A mask as the wire carries it: `left` on the left half, `right` on the right."""
    mask = np.full((height, width), right, np.uint8)
    mask[:, : width // 2] = left
    return RawImage(mask.tobytes(), width, height, 1)


def pixels(image: RawImage) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, -1)


HALVES = (grey(WIDTH, HEIGHT), grey(WIDTH, HEIGHT, left=0, right=255))
SOURCES = (None, grey(STYLE_SIDE, STYLE_SIDE, left=0, right=255))


# ---- the worker, in this process -------------------------------------------------------------


@pytest.fixture
def runner(engine: StyleEngine) -> Iterator[JobRunner]:
    ours, theirs = multiprocessing.Pipe()
    yield JobRunner(engine, theirs, WorkerConfig())
    ours.close()
    theirs.close()


def run_job(runner: JobRunner, masks=(), sources=(), name: str = "masked") -> JobDone | JobFailed:
    content, _ = content_image(WIDTH, HEIGHT)
    styles = (style_png(), style_png(seed=2))
    return runner.run(RunJob(name, content, styles, QUICK, masks, sources))


def test_the_worker_hands_the_masks_to_the_engine(runner: JobRunner) -> None:
    plain = run_job(runner, name="plain")
    masked = run_job(runner, HALVES, SOURCES)
    assert isinstance(plain, JobDone) and isinstance(masked, JobDone), masked
    assert (masked.image.width, masked.image.height) == (WIDTH, HEIGHT)
    assert not np.array_equal(pixels(masked.image), pixels(plain.image))
    assert np.array_equal(pixels(masked.image)[..., 3], content_image(WIDTH, HEIGHT)[1][..., 3])


def test_a_source_mask_not_the_size_of_its_decoded_style_fails_the_job(runner: JobRunner) -> None:
    failed = run_job(runner, (), (None, grey(10, 12)))
    assert isinstance(failed, JobFailed) and failed.code is ErrorCode.INVALID_IMAGE
    assert failed.message == "style source mask 2 is 10x12; style image 2 is 48x48"


def test_the_engines_refusal_of_a_mask_fails_the_job_with_its_words(runner: JobRunner) -> None:
    black = grey(STYLE_SIDE, STYLE_SIDE, left=0)
    failed = run_job(runner, (), (black, None))
    assert isinstance(failed, JobFailed) and failed.code is ErrorCode.INVALID_PARAM
    assert "style source mask 1 is black" in failed.message


# ---- a real daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("runtime"), idle_worker=True) as process:
        yield process


def submit(daemon: DaemonProcess, job_id: str, masks=(), sources=()) -> list[object]:
    content, _ = content_image(WIDTH, HEIGHT)
    with daemon.client() as client:
        stream = client.submit(
            job_id,
            content,
            [style_png(), style_png(seed=2)],
            QUICK,
            style_masks=masks,
            style_source_masks=sources,
        )
        return read_all(stream)


@pytest.mark.slow
def test_a_job_with_masks_runs_on_the_daemon(daemon: DaemonProcess) -> None:
    plain = submit(daemon, "plain")[-1]
    masked = submit(daemon, "masked", HALVES, SOURCES)[-1]
    assert isinstance(plain, Result) and isinstance(masked, Result), masked
    assert (masked.image.width, masked.image.height) == (WIDTH, HEIGHT)
    assert np.array_equal(alpha_of(masked), content_image(WIDTH, HEIGHT)[1][..., 3])
    assert not np.array_equal(pixels(masked.image), pixels(plain.image))  # the masks arrived


@pytest.mark.slow
def test_bad_masks_get_a_clear_error_and_the_daemon_serves_on(daemon: DaemonProcess) -> None:
    wrong = submit(daemon, "wrong-source", (), (grey(9, 7), None))[-1]
    assert isinstance(wrong, Error) and wrong.code is ErrorCode.INVALID_IMAGE
    assert wrong.message == "style source mask 1 is 9x7; style image 1 is 48x48"
    black = submit(daemon, "black-source", (), (None, grey(STYLE_SIDE, STYLE_SIDE, left=0)))[-1]
    assert isinstance(black, Error) and black.code is ErrorCode.INVALID_PARAM
    assert "style source mask 2 is black" in black.message
    assert isinstance(submit(daemon, "after", HALVES)[-1], Result)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    Image.fromarray(content_image(WIDTH, HEIGHT)[1]).save(content)
    style.write_bytes(style_png())
    return {
        "content": content,
        "style": style,
        "mask": write_mask(tmp_path / "mask.png", (WIDTH, HEIGHT)),
        "source": write_mask(tmp_path / "source.png", (STYLE_SIDE, STYLE_SIDE)),
        "small": write_mask(tmp_path / "small.png", (20, 16)),
    }


@pytest.mark.slow
def test_the_command_line_runs_a_job_with_masks_on_the_daemon(
    daemon: DaemonProcess,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(daemon.runtime))  # `stylize` finds the daemon
    out = tmp_path / "out.png"
    code = main(
        [
            "stylize",
            str(files["content"]),
            str(files["style"]),
            str(files["style"]),
            "-o",
            str(out),
            "--iterations",
            "2",
            "--style-masks",
            f"{files['mask']},-",
            "--style-source-masks",
            f"-,{files['source']}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "on the daemon at" in err
    with Image.open(out) as written:
        assert written.size == (WIDTH, HEIGHT) and written.mode == "RGBA"


@pytest.mark.slow
def test_masks_for_the_daemon_are_read_without_torch(
    daemon: DaemonProcess, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.png"
    argv = [files["content"], files["style"], "-o", out, "--iterations", "2"]
    argv += ["--style-masks", files["mask"], "--style-source-masks", files["source"]]
    result = subprocess.run(
        [sys.executable, "-c", STYLIZE_WITHOUT_TORCH, "stylize", *map(str, argv)],
        env=daemon_env(daemon.runtime),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "on the daemon at" in result.stderr
    assert result.stdout.split() == []  # neither torch nor torchvision
    assert out.exists()


@pytest.mark.slow
def test_bad_masks_for_the_daemon_are_named_before_anything_is_sent(
    daemon: DaemonProcess,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(daemon.runtime))
    out = tmp_path / "existing.png"
    out.write_bytes(b"precious")
    c, s, small = files["content"], files["style"], files["small"]
    cases = {
        "wrong size": (["--style-masks", small], f"style mask 1 ({small}) is 20x16; the content"),
        "count": (["--style-masks", f"{small},-"], "--style-masks names 2 file(s) for 1 style"),
        "missing": (["--style-masks", tmp_path / "nope.png"], "nope.png): file not found"),
        "source size": (
            ["--style-source-masks", small],
            f"style source mask 1 ({small}) is 20x16; style image 1 ({s}) is 48x48",
        ),
    }
    for name, (words, expected) in cases.items():
        code = main(["stylize", str(c), str(s), "-o", str(out), "-q", *map(str, words)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (name, lines)
        assert len(lines) == 1 and expected in lines[0], (name, lines)
        assert out.read_bytes() == b"precious", name
    assert "Traceback" not in daemon.stderr()
