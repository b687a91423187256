"""Finding the daemon again after it went away (killed, crashed, or `stop` then `start`), so that
a job stream can resubmit its job there. Standard library only: the connection file says which
daemon is current, its pid says whether the old one still exists."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .connection import ConnectionInfo, read_connection_file, stale
from .errors import ConnectionFileError, DaemonUnavailable, ErrorCode
from .messages import Error, Result
from .version import PROTOCOL_VERSION

RESTART_WAIT = 30.0  # seconds: `neural-style start` binds and writes its file well within this
MAX_RESUBMITS = 3
FILE_POLL = 0.2  # seconds between reads of the connection file while waiting for a new daemon
# The warning a daemon puts on the partial result of a job it cancelled because it is stopping.
SHUTDOWN_WARNING = "the daemon is shutting down"


@dataclass(frozen=True)
class ResubmitPolicy:
    """How a job stream survives a daemon restart: each time its daemon goes away, wait up to
    `wait` seconds for a new one and send it the same job (same id, same inputs); at most
    `attempts` times per job, so a daemon that keeps dying ends the job within
    `attempts * wait` seconds of waiting."""

    attempts: int = MAX_RESUBMITS
    wait: float = RESTART_WAIT


@dataclass(frozen=True)
class Resubmitted:
    """Not a wire message: a job stream's own event saying that its daemon went away and the
    job was sent again to the daemon now running. Its progress starts again."""

    job_id: str
    attempt: int
    reason: str
    endpoint: str
    pid: int

    def __str__(self) -> str:
        return (
            f"{self.reason}; resubmitted job {self.job_id} to the daemon at {self.endpoint} "
            f"(pid {self.pid}), attempt {self.attempt}"
        )


def same_daemon(one: ConnectionInfo, other: ConnectionInfo) -> bool:
    """A restarted daemon has a new pid and key (and, on tcp, usually a new port)."""
    return (one.pid, one.endpoint, one.key) == (other.pid, other.endpoint, other.key)


def successor(path: Path, old: ConnectionInfo) -> ConnectionInfo | None:
    """The live daemon the connection file now names, if it is not `old`; else None."""
    try:
        current = read_connection_file(path)
    except ConnectionFileError:
        return None  # none yet (removed by a clean exit), or garbled: keep waiting
    if same_daemon(current, old) or stale(current):
        return None
    if current.protocol_version != PROTOCOL_VERSION:
        raise DaemonUnavailable(
            f"the restarted daemon (pid {current.pid}) speaks protocol "
            f"version {current.protocol_version}, this client "
            f"{PROTOCOL_VERSION}: restart it from the same installation"
        )
    return current


def departure(path: Path, daemon: ConnectionInfo) -> str | None:
    """Why `daemon` is known to be gone, or None while nothing says so (silence alone is the
    inactivity timeout's business)."""
    if stale(daemon):
        return f"the daemon (pid {daemon.pid}) has exited"
    found = successor(path, daemon)
    if found is not None:
        return f"the connection file now names another daemon (pid {found.pid})"
    return None


def await_successor(
    path: Path,
    old: ConnectionInfo,
    deadline: float,
    should_stop: Callable[[], bool] | None = None,
) -> ConnectionInfo | None:
    """Poll the connection file until it names a new live daemon; None at the deadline (a
    `time.monotonic()` value) or when `should_stop` says so (the user gave up)."""
    while True:
        found = successor(path, old)
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0 or (should_stop is not None and should_stop()):
            return None
        time.sleep(min(FILE_POLL, left))


def ended_by_shutdown(message: object, cancel_sent: bool) -> bool:
    """Whether a job's last event says only that its daemon was stopping, not that the job
    failed or that this client cancelled it: such a job is worth resubmitting."""
    if cancel_sent:
        return False
    if isinstance(message, Error):
        return message.code is ErrorCode.SHUTTING_DOWN
    return (
        isinstance(message, Result) and message.cancelled and SHUTDOWN_WARNING in message.warnings
    )
