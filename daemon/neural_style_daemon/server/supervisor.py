"""The broker's side of the worker process: start it (spawned: CUDA cannot be forked, and the
broker must never initialise it), talk to it over a pipe, notice when it dies, restart it, and
give up after repeated failures. Imports no torch: the worker module is imported by the child
only."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from pathlib import Path

from neural_style_protocol.messages import WorkerState

from .events import CancelJob, FromWorker, RunJob, StopWorker, WorkerConfig, WorkerReady

log = logging.getLogger(__name__)

MAX_FAILURES = 3  # consecutive deaths (while starting or running) before giving up
STOP_TIMEOUT = 5.0  # seconds a worker gets to exit before it is terminated, then killed

_NEXT: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STOPPED: frozenset({WorkerState.STARTING}),
    WorkerState.STARTING: frozenset(
        {WorkerState.IDLE, WorkerState.RESTARTING, WorkerState.FAILED, WorkerState.STOPPED}
    ),
    WorkerState.IDLE: frozenset(
        {WorkerState.BUSY, WorkerState.RESTARTING, WorkerState.FAILED, WorkerState.STOPPED}
    ),
    WorkerState.BUSY: frozenset(
        {WorkerState.IDLE, WorkerState.RESTARTING, WorkerState.FAILED, WorkerState.STOPPED}
    ),
    WorkerState.RESTARTING: frozenset({WorkerState.STARTING, WorkerState.STOPPED}),
    WorkerState.FAILED: frozenset({WorkerState.STOPPED}),
}


def _worker_entry(conn: Connection, config: WorkerConfig) -> None:
    """The child's entry point. Torch lives behind this import, in the child only."""
    from .worker import worker_main

    worker_main(conn, config)


def describe_exit(exitcode: int | None) -> str:
    """'exit code 1' or 'killed by SIGKILL', for messages to people."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class WorkerHandle:
    """One worker process at a time, and its state as `status` reports it."""

    def __init__(
        self,
        config: WorkerConfig,
        max_failures: int = MAX_FAILURES,
        processes: SpawnContext | None = None,
    ) -> None:
        """`processes`: where worker processes and their pipes come from (spawn by default)."""
        self.config = config
        self.max_failures = max_failures
        self.state = WorkerState.STOPPED
        self.failures = 0  # consecutive; a completed job resets it
        self.last_failure: str | None = None
        self.device = config.device  # what was asked for, until the worker says what it got
        self.model_loaded = False
        self.memory_bytes: int | None = None
        self.pid: int | None = None
        self._mp = processes or multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._exit_expected = False
        self._start_failure: str | None = None  # what a worker that could not load said

    def _move(self, state: WorkerState) -> None:
        if state not in _NEXT[self.state]:
            raise RuntimeError(f"worker: {self.state.value} -> {state.value} is not allowed")
        log.debug("worker: %s -> %s", self.state.value, state.value)
        self.state = state

    def start(self) -> None:
        """Spawn a fresh worker; it sends WorkerReady once the model is loaded."""
        parent, child = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=_worker_entry, args=(child, self.config), name="neural-style-worker", daemon=True
        )
        process.start()
        child.close()  # only the child holds its end: its death shows as EOF here
        self._process, self._conn, self._exit_expected = process, parent, False
        self._start_failure = None
        self.pid = process.pid
        self._move(WorkerState.STARTING)
        log.info("started the worker process (pid %d)", process.pid)

    def pipe_fd(self) -> int | None:
        return None if self._conn is None else self._conn.fileno()

    def sentinel(self) -> int | None:
        return None if self._process is None else self._process.sentinel

    def receive(self) -> list[FromWorker]:
        """Every event waiting in the pipe. At EOF (the worker died) the pipe is closed and
        only the sentinel is watched from then on."""
        events: list[FromWorker] = []
        try:
            while self._conn is not None and self._conn.poll():
                events.append(self._conn.recv())
        except (EOFError, OSError):
            self._close_pipe()
        return events

    def memory_in_use(self) -> int | None:
        """What the worker holds now: on the CPU its resident size, read from /proc (the broker
        has no torch to ask); on a GPU the allocation it last reported."""
        if not self.model_loaded:  # stopped, or unloaded and on its way out
            return None
        statm = Path(f"/proc/{self.pid}/statm")
        if self.pid is None or self.device.startswith(("cuda", "mps")) or not statm.exists():
            return self.memory_bytes
        try:
            resident_pages = int(statm.read_text().split()[1])
        except (OSError, IndexError, ValueError):  # the worker exited meanwhile
            return self.memory_bytes
        return resident_pages * os.sysconf("SC_PAGE_SIZE")

    def ready(self, event: WorkerReady) -> None:
        self._move(WorkerState.IDLE)
        self.device, self.pid, self.model_loaded = event.device, event.pid, True
        self.memory_bytes = event.memory_bytes

    def run(self, job: RunJob) -> None:
        """Hand a job to an idle worker."""
        self._move(WorkerState.BUSY)
        self._post(job)

    def job_ended(self, *, healthy: bool) -> None:
        """The running job ended; `healthy`: the worker itself reported it (not a crash)."""
        self._move(WorkerState.IDLE)
        if healthy:
            self.failures = 0

    def cancel(self, job_id: str) -> None:
        self._post(CancelJob(job_id))

    def kill(self) -> None:
        """Kill a worker that ignores cancel; not counted as a failure."""
        if self._process is not None:
            self._exit_expected = True
            self._process.kill()

    def reap(self) -> str:
        """After the sentinel fired: count the failure, choose RESTARTING or FAILED, and say
        how the process ended."""
        process = self._process
        assert process is not None
        process.join()
        how = describe_exit(process.exitcode)
        self._process = None
        self._close_pipe()
        self.model_loaded = False
        if self.state is WorkerState.STOPPED:  # unloaded when idle: stays stopped for now
            log.info("the unloaded worker (pid %s) has exited (%s)", self.pid, how)
            return how
        if not self._exit_expected:
            self.failures += 1
            self.last_failure = self._start_failure or f"the worker process ended ({how})"
            log.error(
                "the worker process (pid %s) ended: %s (failure %d of %d)",
                self.pid,
                how,
                self.failures,
                self.max_failures,
            )
        if self.failures >= self.max_failures:
            self._move(WorkerState.FAILED)
        else:
            self._move(WorkerState.RESTARTING)
        return how

    def unload(self) -> None:
        """Ask an idle worker to exit to free its memory, without waiting (the broker keeps
        answering meanwhile): its exit shows on the sentinel, and `reap` leaves it stopped."""
        self._exit_expected = True
        self._post(StopWorker())
        self.model_loaded, self.memory_bytes = False, None
        self._move(WorkerState.STOPPED)

    @property
    def exiting(self) -> bool:
        """An unloaded worker that has not exited yet."""
        return self.state is WorkerState.STOPPED and self._process is not None

    def note_start_failure(self, message: str) -> None:
        self._start_failure = f"the model could not be loaded: {message}"
        log.error("the worker could not start: %s", message)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the worker to exit; terminate, then kill it if it does not."""
        process = self._process
        if process is not None:
            self._exit_expected = True
            if self.state is WorkerState.STARTING:
                timeout = 0.0  # still importing torch or loading weights: nothing to finish
            self._post(StopWorker())
            process.join(timeout)
            if process.exitcode is None:
                log.info("terminating the worker (it did not stop within %g s)", timeout)
                process.terminate()
                process.join(2.0)
            if process.exitcode is None:
                process.kill()
                process.join()
            self._process = None
        self._close_pipe()
        self.model_loaded, self.memory_bytes = False, None
        if self.state is not WorkerState.STOPPED:
            self._move(WorkerState.STOPPED)

    def _post(self, message: RunJob | CancelJob | StopWorker) -> None:
        if self._conn is None:
            return  # dying: the sentinel will tell
        try:
            self._conn.send(message)
        except (BrokenPipeError, EOFError, OSError) as error:
            log.warning("could not reach the worker: %s", error)
            self._close_pipe()

    def _close_pipe(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
