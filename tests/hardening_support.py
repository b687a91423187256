"""Helpers for the hardening tests (test_hardening_*.py): how many messages, bytes, faults and
jobs to use (reduced by default, the issue's full counts with NEURAL_STYLE_FULL_HARDENING=1),
a thread that keeps pinging the daemon and records the slowest answer, resident memory from
/proc, and the check that a daemon still serves a well-formed client."""

from __future__ import annotations

import os
import socket as sockets
import threading
from pathlib import Path

from daemon_support import QUICK, DaemonProcess, content_image, read_all, style_png

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import ConnectionInfo
from neural_style_protocol.errors import ClientError
from neural_style_protocol.messages import Result

FULL_ENV = "NEURAL_STYLE_FULL_HARDENING"
FULL = os.environ.get(FULL_ENV, "") == "1"
PING_BOUND = 1.0  # seconds: the bound on a ping answered during faults and load
HTTP_POST = (
    b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 8\r\n\r\nshutdown"
)


def scaled(reduced: int, full: int) -> int:
    """`full` when the full hardening run was asked for, else the CI count."""
    return full if FULL else reduced


def report(line: str) -> None:
    """A figure for docs/reliability.md: printed (pytest -s shows it) and, when
    NEURAL_STYLE_FIGURES names a file, appended there."""
    print(line)
    path = os.environ.get("NEURAL_STYLE_FIGURES")
    if path:
        with open(path, "a", encoding="utf-8") as figures:
            figures.write(line + "\n")


class PingMonitor(threading.Thread):
    """Pings the daemon every `interval` seconds from its own client until stopped; the
    slowest round trip, and each ping that got no answer within `timeout`, are kept."""

    def __init__(self, daemon: DaemonProcess, interval: float = 0.05, timeout: float = 5.0) -> None:
        super().__init__(name="ping-monitor", daemon=True)
        self.info = daemon.info()
        self.interval, self.timeout = interval, timeout
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with DaemonClient(self.info) as client:
            while not self._halt.is_set():
                try:
                    self.latencies.append(client.ping(self.timeout))
                except ClientError as error:
                    self.failures.append(str(error))
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(30.0)

    @property
    def slowest(self) -> float:
        return max(self.latencies, default=float("inf"))

    def __enter__(self) -> PingMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_bytes(pid: int) -> int:
    """A process's resident set size, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def assert_served(daemon: DaemonProcess, job_id: str) -> None:
    """A well-formed client still gets a pong and a tiny job's result."""
    assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.stderr()}"
    with daemon.client() as client:
        assert client.ping(timeout=10.0) < 10.0
        end = read_all(client.submit(job_id, content_image()[0], [style_png()], QUICK))[-1]
    assert isinstance(end, Result) and not end.cancelled, end


def raw_tcp(info: ConnectionInfo, payload: bytes) -> bytes:
    """Send bytes on a plain TCP connection; what came back before the daemon hung up."""
    host, port = info.endpoint[len("tcp://") :].rsplit(":", 1)
    answer = b""
    with sockets.create_connection((host, int(port)), timeout=5.0) as peer:
        peer.sendall(payload)
        try:
            while chunk := peer.recv(4096):
                answer += chunk
        except OSError:
            pass  # reset: refused all the same
    return answer
