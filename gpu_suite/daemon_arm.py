"""A real daemon for the benchmark: `neural-style serve` in a child process with its own
runtime folder (a temporary one, removed afterwards, so that a daemon the user runs is neither
found nor disturbed), and jobs timed from submit to result as a client sees them."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from neural_style_daemon.errors import DaemonError
from neural_style_protocol.client import DaemonClient, connect
from neural_style_protocol.connection import APP_NAME, CONNECTION_FILE_NAME
from neural_style_protocol.errors import ClientError
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import WorkerState, new_job_id
from neural_style_protocol.params import JobParams

log = logging.getLogger(__name__)

START_TIMEOUT = 180.0  # seconds: importing torch and initialising CUDA in two processes
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1  # seconds between looks at the connection file while it starts


@dataclass(frozen=True)
class DaemonJob:
    """One job as the client saw it."""

    seconds: float  # submit to result, on the client's clock
    worker_seconds: float  # the job's own time, as the daemon reports it
    steps: int
    peak_mem_mb: float  # the worker's peak during the job, as the daemon reports it
    target_cache_hits: int
    width: int  # of the result (smaller than asked if the daemon retried after running
    height: int  # out of memory)
    warnings: tuple[str, ...]
    image: np.ndarray  # the result, H x W x 3 uint8


def style_file(style: np.ndarray) -> bytes:
    """A style image as the plug-in sends it: an encoded file (PNG: lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(style[..., :3]).save(buffer, format="PNG")
    return buffer.getvalue()


def _rgba(image: np.ndarray) -> RawImage:
    height, width = image.shape[:2]
    opaque = np.full((height, width, 1), 255, np.uint8)
    pixels = np.ascontiguousarray(np.concatenate([image[..., :3], opaque], axis=2))
    return RawImage(pixels.tobytes(), width, height, 4)


class BenchDaemon:
    """Context manager: a started `serve` process and a client connected to it."""

    def __init__(self, weights: str, device: str, *, start_timeout: float = START_TIMEOUT):
        self.weights, self.device, self.start_timeout = weights, device, start_timeout
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: DaemonClient | None = None
        self.start_seconds = 0.0  # from launch to the first answered ping
        self.load_seconds = 0.0  # from launch to the worker's model loaded

    def __enter__(self) -> BenchDaemon:
        self._folder = tempfile.TemporaryDirectory(
            prefix="neural-style-bench-", ignore_cleanup_errors=True
        )
        runtime = Path(self._folder.name)
        runtime.chmod(0o700)
        self._log_path = runtime / "serve.log"
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        command = [
            sys.executable,
            "-m",
            "neural_style_daemon.cli",
            "serve",
            "--weights",
            self.weights,
            "--device",
            self.device,
            "--no-log-file",
        ]
        started = time.perf_counter()
        try:
            with open(self._log_path, "wb") as log_file:
                self._process = subprocess.Popen(
                    command, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file
                )
            self._client = self._wait_ready(runtime / APP_NAME / CONNECTION_FILE_NAME)
            self.start_seconds = time.perf_counter() - started
            self._wait_loaded(self._client)
        except BaseException:
            self.__exit__()
            raise
        self.load_seconds = time.perf_counter() - started
        return self

    def _wait_ready(self, connection_file: Path) -> DaemonClient:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise DaemonError(
                    f"the benchmark's daemon exited with code {code} while "
                    f"starting:\n{self.log_tail()}"
                )
            if connection_file.exists():
                try:
                    client = connect(connection_file, timeout=1.0)
                except ClientError:
                    pass  # written, not answering yet
                else:
                    if client.info.pid == self._process.pid:
                        return client
                    client.close()
            if time.monotonic() >= deadline:
                raise DaemonError(
                    f"the benchmark's daemon did not answer within "
                    f"{self.start_timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)  # another process writes the file: nothing to wait on

    def _wait_loaded(self, client: DaemonClient) -> None:
        """Until the worker, which the daemon starts at once, has loaded the model: the
        warm-up job then measures a first job, not the model's loading."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            reply = client.status()
            if reply.model_loaded:
                return
            if reply.worker_state is WorkerState.FAILED:
                raise DaemonError(
                    f"the benchmark's daemon could not load the model:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise DaemonError(
                    f"the benchmark's daemon did not load the model within "
                    f"{self.start_timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)  # the worker loads in its own process

    def run_job(
        self, content: np.ndarray, style: bytes, params: JobParams, timeout: float | None = None
    ) -> DaemonJob:
        """Submit one job and wait for its result; DaemonError if it fails or (after
        `timeout` seconds, when it is cancelled) does not finish."""
        assert self._client is not None, "use BenchDaemon as a context manager"
        image = _rgba(content)
        started = time.perf_counter()
        try:
            with self._client.submit(
                new_job_id(), image, [style], params, timeout=timeout
            ) as stream:
                result = stream.result()
        except ClientError as error:
            raise DaemonError(f"the daemon did not finish the job: {error}") from None
        seconds = time.perf_counter() - started
        if result.cancelled:
            raise DaemonError(
                f"the job was cancelled after {seconds:.0f} s (the time it was given)"
            )
        out = result.image
        pixels = np.frombuffer(out.data, np.uint8).reshape(out.height, out.width, out.channels)
        stats = result.stats
        return DaemonJob(
            seconds=seconds,
            worker_seconds=stats.elapsed,
            steps=stats.steps,
            peak_mem_mb=stats.peak_memory_bytes / 2**20,
            target_cache_hits=stats.target_cache_hits,
            width=out.width,
            height=out.height,
            warnings=tuple(result.warnings),
            image=np.ascontiguousarray(pixels[..., :3]),
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self._log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __exit__(self, *exc: object) -> None:
        """Ask the daemon to exit, then SIGTERM, then SIGKILL; remove its folder."""
        asked = False
        if self._client is not None:
            try:
                self._client.shutdown(timeout=5.0)
                asked = True
            except ClientError as error:
                log.warning("the benchmark's daemon did not take the shutdown: %s", error)
            self._client.close()
            self._client = None
        process, self._process = self._process, None
        if process is not None:
            _stop(process, asked)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def _stop(process: subprocess.Popen[bytes], asked: bool) -> None:
    """Wait for the daemon to exit (`asked`: it was told to), else end it: SIGTERM lets it
    stop its worker first, SIGKILL does not."""
    endings = (None, signal.SIGTERM, signal.SIGKILL) if asked else (signal.SIGTERM, signal.SIGKILL)
    for ending in endings:
        if ending is not None and process.poll() is None:
            process.send_signal(ending)
        try:
            process.wait(STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            log.warning("the benchmark's daemon (pid %d) has not exited yet", process.pid)
