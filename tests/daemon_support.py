"""Helpers for the daemon tests: a real `neural-style serve` process on loopback with random
weights and its own runtime folder, tiny images, and a few ways to wait on it without sleeping
blindly."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from neural_style_protocol.client import DaemonClient, JobStream
from neural_style_protocol.connection import ConnectionInfo, read_connection_file
from neural_style_protocol.errors import ClientError, ConnectionFileError
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Error, Progress, Result, StatusReply, WorkerState
from neural_style_protocol.params import JobParams

READY_TIMEOUT = 90.0  # seconds for a daemon to start and load random weights on a busy machine
# One scale of a few steps: a job of a fraction of a second.
QUICK = JobParams(iterations=3)
# Far more steps than any test waits for: such a job ends only by cancel (Adam never stops
# early, unlike L-BFGS on a converged image).
LONG = JobParams(iterations=10_000, optimizer="adam")


def daemon_env(runtime: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    # One thread: the machine's cores are shared, and OpenMP threads that spin on them made
    # tiny jobs several times slower.
    env["OMP_NUM_THREADS"] = "1"
    return env


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05
) -> object:
    """Poll `condition` until it returns something true; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class DaemonProcess:
    """`python -m neural_style_daemon.cli serve ...` with XDG_RUNTIME_DIR at `runtime`."""

    def __init__(self, runtime: Path, *options: str) -> None:
        runtime.mkdir(mode=0o700, exist_ok=True)
        self.runtime = runtime
        self.folder = runtime / "neural-style"
        self.connection_file = self.folder / "daemon.json"
        self.log_file = self.folder / "daemon.log"
        self.stderr_path = runtime / "serve.stderr"
        command = [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "serve",
            "--weights",
            "random",
            "--device",
            "cpu",
            *options,
        ]
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                command,
                env=daemon_env(runtime),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def info(self) -> ConnectionInfo:
        return read_connection_file(self.connection_file)

    def client(self, **options: object) -> DaemonClient:
        return DaemonClient(self.info(), **options)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the connection file names this process and it answers a ping."""

        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the daemon exited ({self.process.returncode}):\n{self.stderr()}"
                )
            try:
                if self.info().pid != self.pid:
                    return False
                with self.client() as client:
                    client.ping(1.0)
            except (OSError, ValueError, ClientError, ConnectionFileError):
                return False
            return True

        wait_until(listening, timeout, "the daemon to listen")

    def wait_worker(
        self, state: WorkerState = WorkerState.IDLE, timeout: float = READY_TIMEOUT
    ) -> StatusReply:
        with self.client() as client:

            def reached() -> StatusReply | None:
                reply = client.status()
                return reply if reply.worker_state is state else None

            return wait_until(reached, timeout, f"the worker to be {state.value}", interval=0.1)  # type: ignore[return-value]

    def worker_pid(self) -> int:
        """The spawned worker: the child of the daemon whose command line is multiprocessing's."""
        for child in child_pids(self.pid):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
        raise AssertionError("no worker process found")

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code (SIGKILL after `timeout`, failing the caller)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the daemon ignored SIGTERM for {timeout:g} s") from None


@contextmanager
def running_daemon(
    runtime: Path, *options: str, idle_worker: bool = False
) -> Iterator[DaemonProcess]:
    """A daemon that answers (with its worker idle, if asked), stopped afterwards: an exit
    code other than 0 fails the test, with the daemon's stderr."""
    process = DaemonProcess(runtime, *options)
    try:
        process.wait_listening()
        if idle_worker:
            process.wait_worker(WorkerState.IDLE)
        yield process
    finally:
        code = process.terminate()
        assert code == 0, process.stderr()


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children.append(int(entry.name))
    return children


def content_image(width: int = 40, height: int = 32, seed: int = 0) -> tuple[RawImage, np.ndarray]:
    """An RGBA content image with a varied alpha channel, as sent and as an array."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [x * 255 // width, y * 255 // height, rng.integers(0, 256, (height, width))], axis=-1
    )
    alpha = rng.integers(0, 256, (height, width))
    pixels = np.dstack([rgb, alpha]).astype(np.uint8)
    return RawImage(pixels.tobytes(), width, height, 4), pixels


def style_png(width: int = 48, height: int = 48, seed: int = 1) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    stripes = ((x + y) // 4 % 2)[..., None] * np.array([200, -150, 30])
    pixels = np.clip(
        np.array([30, 180, 120]) + stripes + rng.normal(0, 10, (height, width, 3)), 0, 255
    ).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def read_all(stream: JobStream) -> list[object]:
    """Every event of a job to its end."""
    return list(stream)


def first_progress(stream: JobStream) -> list[object]:
    """Events up to and including the first Progress (the job is running)."""
    events = []
    for event in stream:
        events.append(event)
        if isinstance(event, Progress):
            return events
        if isinstance(event, (Result, Error)):
            raise AssertionError(f"the job ended before any progress: {event}")
    raise AssertionError("the stream ended")


def alpha_of(result: Result) -> np.ndarray:
    image = np.frombuffer(result.image.data, np.uint8)
    return image.reshape(result.image.height, result.image.width, 4)[..., 3]


def kinds(events: Iterable[object]) -> list[str]:
    return [type(event).__name__ for event in events]
