"""The daemon's recovery paths, driven by faults injected into a real worker process (random
weights, CPU, loopback) through NEURAL_STYLE_FAULTS: out of memory at a step, a slow start, a
worker that ignores cancel; and the timers: a job's wall-time limit, the idle unload. (A worker
that cannot load at all is in test_daemon_lifecycle.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from daemon_support import (
    LONG,
    QUICK,
    DaemonProcess,
    content_image,
    daemon_env,
    first_progress,
    read_all,
    style_png,
)
from PIL import Image

from neural_style_daemon.server.faults import FAULTS_ENV, Faults, parse_faults
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Accepted, Error, Progress, Result, WorkerState

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def start_daemon(runtime: Path, faults: str, *options: str) -> DaemonProcess:
    """A daemon whose worker injects `faults` (the broker passes its environment on)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(FAULTS_ENV, faults)
        daemon = DaemonProcess(runtime, *options)
    daemon.wait_listening()
    return daemon


def stop_daemon(daemon: DaemonProcess) -> None:
    assert daemon.terminate() == 0, daemon.stderr()


# ---- the switch itself ---------------------------------------------------------------------


def test_faults_are_parsed_strictly() -> None:
    assert parse_faults("") == Faults()
    assert parse_faults(" oom_at_step=3, ignore_cancel ,slow_start=0.5,oom_attempts=2") == Faults(
        oom_at_step=3, oom_attempts=2, ignore_cancel=True, slow_start=0.5
    )
    assert parse_faults("slow_steps=0.25") == Faults(slow_steps=0.25)
    for bad in (
        "oom_at_step",
        "oom_at_step=0",
        "oom_at_step=x",
        "oom_attempts=0",
        "slow_start=nan",
        "slow_start=-1",
        "slow_steps=-0.1",
        "ignore_cancel=1",
        "fail_on_start,fail_on_start",
        "explode",
    ):
        with pytest.raises(ValueError, match=FAULTS_ENV):
            parse_faults(bad)


def test_a_malformed_fault_switch_stops_serve_before_it_starts(tmp_path: Path) -> None:
    env = daemon_env(tmp_path) | {FAULTS_ENV: "oom_at_step=soon"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "serve",
            "--weights",
            "random",
            "--device",
            "cpu",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "oom_at_step=soon" in done.stderr


# ---- out of memory -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def oom_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    # Each job's first two attempts run out of memory at their second step.
    daemon = start_daemon(
        tmp_path_factory.mktemp("runtime"), "oom_at_step=2,oom_attempts=2", "--oom-min-size", "32"
    )
    try:
        daemon.wait_worker(WorkerState.IDLE)
        yield daemon
    finally:
        stop_daemon(daemon)


@pytest.mark.slow
def test_out_of_memory_is_retried_with_a_shorter_history_then_smaller_and_the_client_is_told(
    oom_daemon: DaemonProcess,
) -> None:
    with oom_daemon.client() as client:
        events = read_all(
            client.submit("oom-retry", content_image(64, 48)[0], [style_png()], QUICK)
        )
    result = events[-1]
    assert isinstance(result, Result) and not result.cancelled
    assert result.warnings == (
        "out of memory at 64 px: retried with a shorter L-BFGS history (5 steps)",
        "out of memory at 64 px: retried at 45 px",
    )
    assert (result.image.width, result.image.height) == (64, 48)  # the content's size
    assert result.stats.steps == QUICK.iterations  # the retry's steps: a full run
    seqs = [event.seq for event in events if isinstance(event, Progress)]
    assert len(seqs) > 3 and seqs == sorted(set(seqs))  # every attempt's progress, in order


@pytest.mark.slow
def test_the_command_line_on_the_daemon_prints_the_retries_warnings(
    oom_daemon: DaemonProcess, tmp_path: Path
) -> None:
    content, style, output = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "o.png"
    Image.fromarray(content_image(64, 48)[1]).save(content)
    style.write_bytes(style_png())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "stylize",
            str(content),
            str(style),
            "-o",
            str(output),
            "--iterations",
            str(QUICK.iterations),
        ],
        env=daemon_env(oom_daemon.runtime),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "on the daemon at" in done.stderr
    assert (
        "neural-style: warning: out of memory at 64 px: retried with a shorter L-BFGS "
        "history (5 steps)"
    ) in done.stderr
    assert "neural-style: warning: out of memory at 64 px: retried at 45 px" in done.stderr
    with Image.open(output) as written:
        assert written.size == (64, 48)


@pytest.mark.slow
def test_an_adam_job_out_of_memory_goes_straight_to_a_smaller_size(
    oom_daemon: DaemonProcess,
) -> None:
    with oom_daemon.client() as client:
        result = read_all(
            client.submit(
                "oom-adam",
                content_image(64, 48)[0],
                [style_png()],
                replace(QUICK, optimizer="adam"),
            )
        )[-1]
    assert isinstance(result, Result)
    assert result.warnings == (
        "out of memory at 64 px: retried at 45 px",
        "out of memory at 45 px: retried at 32 px",
    )


@pytest.mark.slow
def test_out_of_memory_at_the_floor_fails_the_job_and_the_daemon_keeps_serving(
    oom_daemon: DaemonProcess,
) -> None:
    with oom_daemon.client() as client:
        failed = read_all(
            client.submit("oom-floor", content_image(32, 24)[0], [style_png()], QUICK)
        )[-1]
        assert isinstance(failed, Error) and failed.code is ErrorCode.OUT_OF_MEMORY
        assert "at 32 px" in failed.message and "smaller size" in failed.message
        assert client.status().worker_state is WorkerState.IDLE
        after = read_all(
            client.submit("after-oom", content_image(64, 48)[0], [style_png()], QUICK)
        )[-1]
    assert isinstance(after, Result) and after.warnings


# ---- a slow start, then the idle unload ------------------------------------------------------


@pytest.mark.slow
def test_a_slow_worker_start_and_an_idle_unload_leave_the_daemon_answering(tmp_path: Path) -> None:
    # 1.2 s without jobs unloads the worker; each start sleeps 2 s before loading.
    daemon = start_daemon(tmp_path / "runtime", "slow_start=2", "--unload-after-idle", "0.02")
    try:
        with daemon.client() as client:
            status = client.status()
            assert status.worker_state is WorkerState.STARTING and not status.model_loaded
            assert max(client.ping(timeout=1.0) for _ in range(5)) < 0.5
            events = read_all(client.submit("waits", content_image()[0], [style_png()], QUICK))
            assert isinstance(events[0], Accepted) and events[0].queue_position == 1
            assert isinstance(events[-1], Result) and not events[-1].cancelled
            unloaded = daemon.wait_worker(WorkerState.STOPPED, timeout=30)
            assert not unloaded.model_loaded and unloaded.memory_bytes is None
            again = read_all(client.submit("reloads", content_image()[0], [style_png()], QUICK))[-1]
            assert isinstance(again, Result) and not again.cancelled
    finally:
        stop_daemon(daemon)
    assert "loading the model again" in daemon.stderr()


# ---- a job that will not stop ----------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_that_ignores_cancel_is_killed_and_replaced(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "runtime", "ignore_cancel", "--cancel-grace", "1")
    try:
        daemon.wait_worker(WorkerState.IDLE)
        stuck = daemon.worker_pid()
        with daemon.client() as client:
            stream = client.submit("stubborn", content_image(32, 32)[0], [style_png()], LONG)
            first_progress(stream)
            asked = time.monotonic()
            assert client.cancel("stubborn").code is ErrorCode.CANCELLED
            end = read_all(stream)[-1]
            assert time.monotonic() - asked < 10
            assert isinstance(end, Error) and end.code is ErrorCode.CANCELLED
            assert "did not stop within 1 s" in end.message
            daemon.wait_worker(WorkerState.IDLE)
            assert daemon.worker_pid() != stuck
            after = read_all(client.submit("next", content_image()[0], [style_png()], QUICK))
            assert isinstance(after[-1], Result)
    finally:
        stop_daemon(daemon)


@pytest.mark.slow
def test_a_job_past_its_time_limit_ends_timed_out(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "runtime", "", "--job-timeout", "2")
    try:
        daemon.wait_worker(WorkerState.IDLE)
        worker = daemon.worker_pid()
        with daemon.client() as client:
            started = time.monotonic()
            end = read_all(client.submit("endless", content_image(32, 32)[0], [style_png()], LONG))[
                -1
            ]
            assert 2 <= time.monotonic() - started < 15
            assert isinstance(end, Error) and end.code is ErrorCode.TIMED_OUT
            assert "limit of 2 s" in end.message
            after = read_all(client.submit("in-time", content_image()[0], [style_png()], QUICK))[-1]
            assert isinstance(after, Result) and not after.cancelled
        assert daemon.worker_pid() == worker  # stopped cooperatively: the same warm worker
    finally:
        stop_daemon(daemon)
