"""Daemons started and ended one per test: SIGTERM with jobs in flight, the command line's
start/status/stylize/stop (over a stale connection file), the idle exit, and a worker that
cannot start at all."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from daemon_support import (
    LONG,
    DaemonProcess,
    child_pids,
    content_image,
    daemon_env,
    first_progress,
    read_all,
    style_png,
    wait_until,
)
from PIL import Image

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import is_process_alive
from neural_style_protocol.errors import DaemonTimeout, DaemonUnavailable, ErrorCode
from neural_style_protocol.messages import Accepted, Error, Result, WorkerState

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
]


def test_sigterm_cancels_and_reports_jobs_then_exits_cleanly(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "runtime")
    try:
        daemon.wait_listening()
        daemon.wait_worker(WorkerState.IDLE)
        worker = daemon.worker_pid()
        with daemon.client() as first, daemon.client() as second:
            running = first.submit("running", content_image(32, 32)[0], [style_png()], LONG)
            first_progress(running)
            queued = second.submit("queued", content_image()[0], [style_png()], LONG)
            assert isinstance(next(queued), Accepted)
            daemon.process.terminate()  # SIGTERM
            partial = read_all(running)[-1]
            told = read_all(queued)[-1]
        assert daemon.process.wait(60) == 0, daemon.stderr()
    finally:
        daemon.terminate()
    assert isinstance(partial, Result) and partial.cancelled
    assert "shutting down" in " ".join(partial.warnings)
    assert isinstance(told, Error) and told.code is ErrorCode.SHUTTING_DOWN
    assert not daemon.connection_file.exists()
    wait_until(lambda: not is_process_alive(worker), 10.0, "the worker to exit")


def run_cli(runtime: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "neural_style_daemon.cli", *args],
        env=daemon_env(runtime),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_stale_connection_file(folder: Path) -> int:
    """A connection file left by a daemon that died without cleaning up."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(gone.stdout)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "daemon.json"
    path.write_text(
        json.dumps(
            {"endpoint": "tcp://127.0.0.1:9", "key": "00" * 32, "pid": pid, "version": "0.0.1"}
        )
    )
    path.chmod(0o600)
    return pid


def test_start_status_stylize_stop_from_the_command_line(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    stale_pid = write_stale_connection_file(runtime / "neural-style")
    content, style, output = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    Image.fromarray(content_image(40, 32)[1]).save(content)
    style.write_bytes(style_png())
    started = run_cli(runtime, "start", "--weights", "random", "--device", "cpu")
    try:
        assert started.returncode == 0, started.stderr
        assert "started the daemon" in started.stdout and "tcp://127.0.0.1:" in started.stdout
        info = json.loads((runtime / "neural-style" / "daemon.json").read_text())
        assert info["pid"] != stale_pid
        again = run_cli(runtime, "start", "--weights", "random", "--device", "cpu")
        assert again.returncode == 0 and "already running" in again.stdout
        status = run_cli(runtime, "status")
        assert status.returncode == 0, status.stderr
        assert f"pid {info['pid']}" in status.stdout and "worker:" in status.stdout
        stylized = run_cli(
            runtime, "stylize", str(content), str(style), "-o", str(output), "--iterations", "2"
        )
        assert stylized.returncode == 0, stylized.stderr
        assert "on the daemon at" in stylized.stderr
        with Image.open(output) as image:
            assert image.size == (40, 32) and image.mode == "RGBA"
            assert np.array_equal(np.asarray(image)[..., 3], content_image(40, 32)[1][..., 3])
        assert "reused" not in stylized.stderr  # the first job computed its targets
        repeated = run_cli(
            runtime, "stylize", str(content), str(style), "-o", str(output), "--iterations", "2"
        )
        assert repeated.returncode == 0, repeated.stderr
        assert "style and content targets reused from earlier jobs" in repeated.stderr
    finally:
        stopped = run_cli(runtime, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the daemon" in stopped.stdout
    # It has exited; its new parent (init, after `start` exited) reaps it soon after.
    wait_until(lambda: not is_process_alive(info["pid"]), 30.0, "the daemon to be reaped")
    after = run_cli(runtime, "status")
    assert after.returncode == 1 and "no daemon is running" in after.stderr


def test_the_daemon_exits_by_itself_after_the_idle_time(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "runtime", "--exit-after-idle", "0.02")  # 1.2 s
    try:
        daemon.wait_listening()
        assert daemon.process.wait(60) == 0, daemon.stderr()
    finally:
        daemon.terminate()
    assert not daemon.connection_file.exists()
    assert "no jobs for 1.2 s" in daemon.stderr()


def test_a_worker_that_cannot_start_is_given_up_on_and_status_says_so(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "runtime", "--weights", str(tmp_path / "missing.pth"))
    try:
        daemon.wait_listening()
        status = daemon.wait_worker(WorkerState.FAILED, timeout=180)
        assert not status.model_loaded
        with daemon.client() as client:
            refused = read_all(client.submit("hopeless", content_image()[0], [style_png()]))
        assert isinstance(refused[-1], Error) and refused[-1].code is ErrorCode.WORKER_FAILED
        assert "3 times" in refused[-1].message and "missing.pth" in refused[-1].message
        assert child_pids(daemon.pid) == [] or all(
            b"spawn_main" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            for pid in child_pids(daemon.pid)
        )
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


def test_a_client_times_out_when_the_daemon_dies_and_its_worker_exits(tmp_path: Path) -> None:
    daemon = DaemonProcess(tmp_path / "runtime")
    try:
        daemon.wait_listening()
        daemon.wait_worker(WorkerState.IDLE)
        worker = daemon.worker_pid()
        with daemon.client() as client:
            stream = client.submit(
                "orphaned", content_image(32, 32)[0], [style_png()], LONG, inactivity_timeout=3.0
            )
            first_progress(stream)
            daemon.process.kill()  # SIGKILL: no cleanup at all
            daemon.process.wait()
            started = time.monotonic()
            with pytest.raises(DaemonTimeout, match="no word from the daemon"):
                read_all(stream)
            assert time.monotonic() - started < 30.0
            with pytest.raises(DaemonUnavailable):
                client.ping(timeout=0.5)
        wait_until(lambda: not is_process_alive(worker), 30.0, "the orphaned worker to exit")
        with pytest.raises(DaemonUnavailable, match="has exited"):
            DaemonClient.from_connection_file(daemon.connection_file)  # the file is stale
    finally:
        daemon.process.kill()
        daemon.process.wait()
