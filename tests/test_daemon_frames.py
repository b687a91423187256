"""A sequence as one daemon job (issue 20): the worker runs the frames through the engine's
sequence mode and sends each finished frame as it goes; a real daemon over ZeroMQ queues,
reports, cancels (keeping the frames done) and returns the frames in order. Random weights, tiny
images: the mechanics, not the look (docs/quality.md has that)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest
from daemon_support import QUICK, DaemonProcess, running_daemon, style_png
from PIL import Image

from neural_style_daemon.cli import main
from neural_style_daemon.engine.stylize import StyleEngine
from neural_style_daemon.server.events import (
    CancelJob,
    JobDone,
    JobFailed,
    JobProgress,
    RunJob,
    WorkerConfig,
)
from neural_style_daemon.server.worker import JobRunner
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Progress, Result
from neural_style_protocol.params import JobParams

WIDTH, HEIGHT = 40, 32
STEP = 2  # px a frame


def panning(frames: int = 3) -> list[np.ndarray]:
    """RGBA crops sliding right over one picture, with an alpha of their own."""
    wide_width = WIDTH + STEP * frames
    y, x = np.mgrid[0:HEIGHT, 0:wide_width]
    rng = np.random.default_rng(0)
    rgb = np.stack([(x * 9) % 256, y * 255 // HEIGHT, rng.integers(0, 256, x.shape)], -1)
    alpha = rng.integers(0, 256, (HEIGHT, WIDTH))
    return [
        np.dstack([rgb[:, i * STEP : i * STEP + WIDTH], alpha]).astype(np.uint8)
        for i in range(frames)
    ]


def raw(frame: np.ndarray) -> RawImage:
    return RawImage(frame.tobytes(), WIDTH, HEIGHT, 4)


def pixels(image: RawImage) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, 4)


def sequence_job(name: str, frames: list[np.ndarray], params=QUICK) -> RunJob:
    first, *later = (raw(frame) for frame in frames)
    return RunJob(name, first, (style_png(),), params, sequence=tuple(later))


# ---- the worker, in this process -------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[Connection, Connection]]:
    ours, theirs = multiprocessing.Pipe()
    yield ours, theirs
    ours.close()
    theirs.close()


def received(conn: Connection) -> list[object]:
    events = []
    while conn.poll():
        events.append(conn.recv())
    return events


def test_the_worker_runs_a_sequence_and_sends_each_frame_when_done(
    engine: StyleEngine, pipe: tuple[Connection, Connection]
) -> None:
    ours, theirs = pipe
    frames = panning()
    done = JobRunner(engine, theirs, WorkerConfig()).run(sequence_job("frames", frames))
    assert isinstance(done, JobDone) and not done.cancelled, done
    images = [done.image, *done.sequence]
    assert len(images) == 3
    for image, frame in zip(images, frames, strict=True):
        assert (image.width, image.height) == (WIDTH, HEIGHT)
        assert np.array_equal(pixels(image)[..., 3], frame[..., 3])  # each frame's own alpha
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))
    events = [event for event in received(ours) if isinstance(event, JobProgress)]
    assert {event.frames for event in events} == {3}
    assert [event.frame for event in events] == sorted(event.frame for event in events)
    finished = [event for event in events if event.frame_image is not None]
    assert [event.frame for event in finished] == [1, 2, 3]
    for event, image in zip(finished, images, strict=True):
        assert event.frame_image == image  # sent as soon as done, the same as the result's
    assert events[-1].work_done == pytest.approx(1.0)


def test_a_cancel_keeps_the_frames_done_and_the_partial_one_last(
    engine: StyleEngine, pipe: tuple[Connection, Connection]
) -> None:
    ours, theirs = pipe
    frames = panning(4)
    runner = JobRunner(engine, theirs, WorkerConfig())
    outcome: list[JobDone | JobFailed] = []
    # Adam never stops early: each frame takes its 30 steps, far longer than the cancel takes
    # to arrive once frame 1 is out.
    job = sequence_job("cancelled", frames, JobParams(iterations=30, optimizer="adam"))
    worker = threading.Thread(target=lambda: outcome.append(runner.run(job)))
    worker.start()
    try:
        while True:
            event = ours.recv()
            if isinstance(event, JobProgress) and event.frame_image is not None:
                ours.send(CancelJob("cancelled"))
                break
    finally:
        worker.join(120)
    done = outcome[0]
    assert isinstance(done, JobDone) and done.cancelled
    assert len(done.sequence) == 1  # frame 1 done, then frame 2 as far as it got
    assert np.array_equal(pixels(done.sequence[0])[..., 3], frames[1][..., 3])


# ---- a real daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("runtime"), idle_worker=True) as process:
        yield process


@pytest.mark.slow
def test_a_sequence_is_one_job_on_the_daemon(daemon: DaemonProcess) -> None:
    frames = panning()
    with daemon.client() as client:
        stream = client.submit(
            "sequence",
            raw(frames[0]),
            [style_png()],
            QUICK,
            sequence=[raw(frame) for frame in frames[1:]],
        )
        events = list(stream)
        again = list(client.submit("sequence", raw(frames[0]), [style_png()], QUICK))
    result = events[-1]
    assert isinstance(result, Result) and not result.cancelled, result
    assert len(result.images) == 3
    progress = [event for event in events if isinstance(event, Progress)]
    assert {event.frames for event in progress} == {3}
    finished = [event.frame_image for event in progress if event.frame_image is not None]
    assert finished == list(result.images)
    status_progress = [event for event in progress if event.frame_image is None]
    assert status_progress  # the ordinary reports go on between the frames
    # The same id again: the kept result, frames and all, without a second run.
    assert isinstance(again[-1], Result) and again[-1].images == result.images


@pytest.mark.slow
def test_stylize_frames_runs_on_the_daemon_and_writes_each_frame(
    daemon: DaemonProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(daemon.runtime))  # the command finds the daemon
    paths = []
    for index, frame in enumerate(panning()):
        paths.append(tmp_path / f"f{index}.png")
        Image.fromarray(frame[..., :3]).save(paths[-1])  # RGB frames: RGB results
    style = tmp_path / "style.png"
    style.write_bytes(style_png())
    out = tmp_path / "out"
    argv = ["stylize-frames", *map(str, paths), "--style", str(style), "--out-dir", str(out)]
    assert main([*argv, "--iterations", "2"]) == 0
    err = capsys.readouterr().err
    assert "wrote 3 frames" in err and "on the daemon at" in err
    assert sorted(path.name for path in out.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    for path in out.iterdir():
        with Image.open(path) as written:
            assert written.size == (WIDTH, HEIGHT) and written.mode == "RGB"
    # Frames of another size: refused in the protocol's words, and no folder is made.
    Image.fromarray(panning()[0][:20, :30, :3]).save(paths[1])
    elsewhere = tmp_path / "elsewhere"
    assert main([*argv[:-1], str(elsewhere)]) == 2
    assert "frame 2 is 30x20, frame 1 is 40x32" in capsys.readouterr().err
    assert not elsewhere.exists()
