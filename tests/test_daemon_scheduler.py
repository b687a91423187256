"""The scheduler without sockets or processes: a fake clock, a send that records what each client
is told, and the real WorkerHandle over fake worker processes, so that the worker's own state
machine (restarts, failures, unloading) runs as in the daemon. What the daemon tests reach
only through subprocesses (queueing, cancels, stuck workers, timeouts, restarts) is driven
here step by step."""

from __future__ import annotations

import itertools
import signal
from collections import deque

import pytest

from neural_style_daemon.server.events import (
    CancelJob,
    JobDone,
    JobFailed,
    JobProgress,
    RunJob,
    StopWorker,
    WorkerConfig,
    WorkerReady,
    WorkerStartFailed,
)
from neural_style_daemon.server.jobs import JobState
from neural_style_daemon.server.scheduler import Scheduler, SchedulerConfig
from neural_style_daemon.server.supervisor import MAX_FAILURES, WorkerHandle
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Accepted, Error, Result, Submit, WorkerState
from neural_style_protocol.params import JobParams

CLIENT = b"client-1"
OTHER = b"client-2"
_pids = itertools.count(4_000_001)  # above Linux's pid_max: never a real process


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakePipeEnd:
    """The broker's end of the pipe: what the broker posted, and what the worker said."""

    def __init__(self) -> None:
        self.posted: list[object] = []
        self.said: deque[object] = deque()
        self.eof = False

    def send(self, message: object) -> None:
        if self.eof:
            raise BrokenPipeError("the worker is gone")
        self.posted.append(message)

    def poll(self) -> bool:
        if self.eof and not self.said:
            raise EOFError
        return bool(self.said)

    def recv(self) -> object:
        return self.said.popleft()

    def fileno(self) -> int:
        return 99

    def close(self) -> None:
        pass


class FakeProcess:
    def __init__(self, **_: object) -> None:
        self.pid = next(_pids)
        self.sentinel = self.pid
        self.exitcode: int | None = None
        self.kills = 0

    def start(self) -> None:
        pass

    def kill(self) -> None:
        self.kills += 1

    def terminate(self) -> None:
        self.exitcode = -signal.SIGTERM

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeProcesses:
    """Stands in for multiprocessing's spawn context: every worker the handle starts."""

    def __init__(self) -> None:
        self.processes: list[FakeProcess] = []
        self.pipes: list[FakePipeEnd] = []

    def Pipe(self, duplex: bool) -> tuple[FakePipeEnd, FakePipeEnd]:
        self.pipes.append(FakePipeEnd())
        return self.pipes[-1], FakePipeEnd()

    def Process(self, **options: object) -> FakeProcess:
        self.processes.append(FakeProcess(**options))
        return self.processes[-1]


class Daemon:
    """A scheduler and its worker, with the broker's part played by the test."""

    def __init__(self, **config: object) -> None:
        self.clock = FakeClock()
        self.told: list[tuple[bytes, object, str | None]] = []
        self.gone: set[bytes] = set()
        self.processes = FakeProcesses()
        self.worker = WorkerHandle(WorkerConfig(), processes=self.processes)
        self.scheduler = Scheduler(self.worker, self.send, SchedulerConfig(**config), self.clock)
        self.worker.start()

    def send(self, peer: bytes, message: object, parent_id: str | None) -> bool:
        self.told.append((peer, message, parent_id))
        return peer not in self.gone

    @property
    def process(self) -> FakeProcess:
        return self.processes.processes[-1]

    @property
    def posted(self) -> list[object]:
        """What the broker posted to the current worker process."""
        return self.processes.pipes[-1].posted

    def ready(self) -> None:
        self.scheduler.on_worker_events([WorkerReady("cpu", self.process.pid)])

    def submit(self, job_id: str, peer: bytes = CLIENT) -> None:
        self.scheduler.peers.touch(peer)
        self.scheduler.submit(peer, f"msg-{job_id}", submit(job_id))

    def finish(self, job_id: str, cancelled: bool = False) -> None:
        self.scheduler.on_worker_events([done(job_id, cancelled)])

    def exits(self, exitcode: int) -> None:
        """The current worker process ends; the broker sees its sentinel."""
        self.process.exitcode = exitcode
        self.processes.pipes[-1].eof = True
        self.scheduler.on_worker_exit()

    def tick_after(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.scheduler.peers.touch(CLIENT)  # the client's pings keep coming
        self.scheduler.tick()

    def messages_to(self, peer: bytes = CLIENT) -> list[object]:
        return [message for to, message, _ in self.told if to == peer]

    def last_to(self, peer: bytes = CLIENT) -> object:
        return self.messages_to(peer)[-1]

    def runs(self) -> list[str]:
        """The jobs handed to any worker, in order."""
        return [
            message.job_id
            for pipe in self.processes.pipes
            for message in pipe.posted
            if isinstance(message, RunJob)
        ]

    def state(self, job_id: str) -> JobState:
        job = self.scheduler.jobs.find(job_id)
        assert job is not None
        return job.state


def submit(job_id: str) -> Submit:
    return Submit(job_id, RawImage(bytes(4 * 4), 2, 2, 4), (b"style",), JobParams())


def progress(job_id: str) -> JobProgress:
    return JobProgress(job_id, 1, 1, 1, 10, 0.1, {"total": 1.0}, 0.5, 4.5, 1 << 20)


def done(job_id: str, cancelled: bool = False) -> JobDone:
    return JobDone(job_id, RawImage(bytes(4 * 4), 2, 2, 4), cancelled, 7, 1.5, 1 << 20)


@pytest.fixture
def daemon() -> Daemon:
    return Daemon(job_timeout=None)


# ---- queueing ------------------------------------------------------------------------------


def test_jobs_wait_for_the_model_then_run_one_at_a_time_in_order(daemon: Daemon) -> None:
    daemon.submit("a")
    daemon.submit("b")
    assert daemon.messages_to() == [Accepted("a", 1), Accepted("b", 2)]
    assert daemon.runs() == []  # the model is still loading
    daemon.ready()
    assert daemon.runs() == ["a"]
    assert (daemon.state("a"), daemon.state("b")) == (JobState.RUNNING, JobState.QUEUED)
    assert daemon.worker.state is WorkerState.BUSY
    daemon.finish("a")
    result = daemon.last_to()
    assert isinstance(result, Result) and result.job_id == "a" and not result.cancelled
    assert daemon.runs() == ["a", "b"]
    daemon.finish("b")
    assert daemon.scheduler.idle and daemon.worker.state is WorkerState.IDLE


def test_a_full_queue_refuses_the_next_job_as_busy() -> None:
    daemon = Daemon(queue_limit=1)
    daemon.ready()
    daemon.submit("running")
    daemon.submit("waiting")
    daemon.submit("refused")
    refusal = daemon.last_to()
    assert isinstance(refusal, Error) and refusal.code is ErrorCode.BUSY
    assert daemon.scheduler.jobs.find("refused") is None


def test_a_resubmitted_finished_job_gets_its_kept_result_without_running_again(
    daemon: Daemon,
) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.finish("a")
    first = daemon.last_to()
    daemon.submit("a", peer=OTHER)
    assert daemon.last_to(OTHER) == first
    assert daemon.runs() == ["a"]


def test_a_second_client_submitting_a_running_id_joins_the_job(daemon: Daemon) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.submit("a", peer=OTHER)
    assert daemon.last_to(OTHER) == Accepted("a", 0)
    daemon.finish("a")
    assert isinstance(daemon.last_to(CLIENT), Result)
    assert isinstance(daemon.last_to(OTHER), Result)
    assert daemon.runs() == ["a"]


# ---- cancels -------------------------------------------------------------------------------


def test_cancelling_a_queued_job_ends_it_before_it_starts(daemon: Daemon) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.submit("b")
    daemon.scheduler.cancel(CLIENT, "msg-cancel", "b")
    reply = daemon.last_to()
    assert isinstance(reply, Error) and reply.code is ErrorCode.CANCELLED
    assert daemon.state("b") is JobState.CANCELLED
    daemon.finish("a")
    assert daemon.runs() == ["a"]  # b never reaches the worker


def test_cancelling_the_running_job_asks_the_worker_and_sends_its_partial_result(
    daemon: Daemon,
) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.scheduler.cancel(CLIENT, "msg-cancel", "a")
    assert CancelJob("a") in daemon.posted
    assert daemon.state("a") is JobState.CANCELLING
    daemon.finish("a", cancelled=True)
    result = daemon.last_to()
    assert isinstance(result, Result) and result.cancelled
    assert daemon.state("a") is JobState.CANCELLED
    daemon.scheduler.cancel(CLIENT, "msg-again", "a")
    again = daemon.last_to()
    assert isinstance(again, Error) and again.message == "the job was already cancelled"


def test_cancelling_an_unknown_job_says_not_found(daemon: Daemon) -> None:
    daemon.scheduler.cancel(CLIENT, "msg-cancel", "nothing")
    reply = daemon.last_to()
    assert isinstance(reply, Error) and reply.code is ErrorCode.NOT_FOUND


def test_a_running_job_whose_only_client_disconnected_is_cancelled(daemon: Daemon) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.gone.add(CLIENT)  # GIMP killed the plug-in: the next message to it fails
    daemon.scheduler.on_worker_events([progress("a")])
    assert CancelJob("a") in daemon.posted
    assert daemon.state("a") is JobState.CANCELLING


def test_a_job_whose_client_goes_quiet_is_cancelled() -> None:
    daemon = Daemon(client_timeout=10.0, job_timeout=None)
    daemon.ready()
    daemon.submit("a")
    daemon.clock.advance(9.0)
    daemon.scheduler.tick()
    assert CancelJob("a") not in daemon.posted
    daemon.clock.advance(2.0)  # no ping from the client for 11 s
    daemon.scheduler.tick()
    assert CancelJob("a") in daemon.posted
    assert daemon.state("a") is JobState.CANCELLING


# ---- timeouts and stuck workers -------------------------------------------------------------


def test_a_job_past_its_time_limit_is_cancelled_and_ends_as_timed_out() -> None:
    daemon = Daemon(job_timeout=60.0)
    daemon.ready()
    daemon.submit("a")
    daemon.tick_after(60.0)
    assert CancelJob("a") not in daemon.posted  # at the limit, not past it
    daemon.tick_after(0.5)
    assert CancelJob("a") in daemon.posted
    daemon.finish("a", cancelled=True)
    error = daemon.last_to()
    assert isinstance(error, Error) and error.code is ErrorCode.TIMED_OUT
    assert "limit of 60 s" in error.message
    assert daemon.state("a") is JobState.FAILED


def test_a_job_that_ignores_its_cancel_has_its_worker_killed_once_then_restarted() -> None:
    daemon = Daemon(cancel_grace=30.0, job_timeout=None)
    daemon.ready()
    daemon.submit("a")
    daemon.submit("b")
    first = daemon.process
    daemon.scheduler.cancel(CLIENT, "msg-cancel", "a")
    daemon.tick_after(30.0)
    assert first.kills == 0
    daemon.tick_after(1.0)
    assert first.kills == 1
    daemon.exits(-signal.SIGKILL)
    error = daemon.last_to()
    assert isinstance(error, Error) and error.job_id == "a"
    assert error.code is ErrorCode.CANCELLED and "did not stop within 30 s" in error.message
    # A kill the daemon chose is no failure of the worker's: a fresh one starts for b.
    assert daemon.worker.failures == 0
    assert daemon.process is not first and daemon.worker.state is WorkerState.STARTING
    daemon.ready()
    assert daemon.runs() == ["a", "b"]


def test_a_timed_out_job_that_ignores_its_cancel_ends_as_timed_out_after_the_kill() -> None:
    daemon = Daemon(job_timeout=60.0, cancel_grace=5.0)
    daemon.ready()
    daemon.submit("a")
    daemon.tick_after(61.0)  # cancelled for its time
    daemon.tick_after(4.0)
    assert daemon.process.kills == 0
    daemon.tick_after(2.0)
    assert daemon.process.kills == 1
    daemon.tick_after(10.0)  # still dying: not killed twice
    assert daemon.process.kills == 1
    daemon.exits(-signal.SIGKILL)
    error = daemon.last_to()
    assert isinstance(error, Error) and error.code is ErrorCode.TIMED_OUT
    assert "did not stop within 5 s" in error.message
    assert [m for m in daemon.messages_to() if isinstance(m, Error)] == [error]


# ---- worker deaths and restarts ------------------------------------------------------------


def test_a_worker_that_dies_fails_its_job_and_is_restarted(daemon: Daemon) -> None:
    daemon.ready()
    daemon.submit("a")
    first = daemon.process
    daemon.exits(-signal.SIGSEGV)
    error = daemon.last_to()
    assert isinstance(error, Error) and error.code is ErrorCode.WORKER_FAILED
    assert "killed by SIGSEGV" in error.message
    assert daemon.worker.failures == 1
    assert daemon.process is not first and daemon.worker.state is WorkerState.STARTING
    daemon.ready()
    daemon.submit("b")
    daemon.finish("b")
    assert daemon.worker.failures == 0  # a completed job resets the count


def test_a_job_the_worker_reports_failed_leaves_the_worker_healthy(daemon: Daemon) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.scheduler.on_worker_events([JobFailed("a", ErrorCode.OUT_OF_MEMORY, "too big")])
    error = daemon.last_to()
    assert isinstance(error, Error) and error.code is ErrorCode.OUT_OF_MEMORY
    assert daemon.worker.state is WorkerState.IDLE and len(daemon.processes.processes) == 1


def test_after_repeated_deaths_the_worker_gives_up_and_queued_jobs_fail(daemon: Daemon) -> None:
    daemon.submit("a")
    for _ in range(MAX_FAILURES - 1):
        daemon.scheduler.on_worker_events([WorkerStartFailed("no weights")])
        daemon.exits(1)
        assert daemon.worker.state is WorkerState.STARTING
    daemon.scheduler.on_worker_events([WorkerStartFailed("no weights")])
    daemon.exits(1)
    assert daemon.worker.state is WorkerState.FAILED
    assert len(daemon.processes.processes) == MAX_FAILURES  # no further restart
    error = daemon.last_to()
    assert isinstance(error, Error) and error.code is ErrorCode.WORKER_FAILED
    assert "could not be loaded: no weights" in error.message
    daemon.submit("b")
    refusal = daemon.last_to()
    assert isinstance(refusal, Error) and refusal.job_id == "b"
    assert refusal.code is ErrorCode.WORKER_FAILED


# ---- unloading when idle --------------------------------------------------------------------


def test_an_idle_worker_is_unloaded_and_loaded_again_for_the_next_job() -> None:
    daemon = Daemon(unload_after_idle=60.0, job_timeout=None)
    daemon.ready()
    daemon.submit("a")
    daemon.tick_after(100.0)  # a running job keeps the model
    assert StopWorker() not in daemon.posted
    daemon.finish("a")
    daemon.tick_after(59.0)
    assert StopWorker() not in daemon.posted
    daemon.tick_after(1.0)
    assert StopWorker() in daemon.posted
    assert daemon.worker.state is WorkerState.STOPPED and not daemon.worker.model_loaded
    daemon.submit("b")  # before the unloaded process has exited: its exit starts the next
    assert len(daemon.processes.processes) == 1
    daemon.exits(0)
    assert len(daemon.processes.processes) == 2
    daemon.ready()
    assert daemon.runs() == ["a", "b"]


def test_an_unloaded_worker_that_exits_stays_stopped_until_a_job_comes() -> None:
    daemon = Daemon(unload_after_idle=60.0)
    daemon.ready()
    daemon.tick_after(60.0)
    daemon.exits(0)
    assert daemon.worker.state is WorkerState.STOPPED
    assert daemon.worker.failures == 0 and len(daemon.processes.processes) == 1
    daemon.submit("a")
    assert daemon.worker.state is WorkerState.STARTING


# ---- shutdown -------------------------------------------------------------------------------


def test_shutdown_ends_queued_jobs_stops_the_running_one_and_refuses_new_ones(
    daemon: Daemon,
) -> None:
    daemon.ready()
    daemon.submit("a")
    daemon.submit("b")
    daemon.scheduler.begin_shutdown()
    ended = daemon.last_to()
    assert isinstance(ended, Error) and ended.job_id == "b"
    assert ended.code is ErrorCode.SHUTTING_DOWN
    assert CancelJob("a") in daemon.posted and not daemon.scheduler.drained
    daemon.submit("c")
    refusal = daemon.last_to()
    assert isinstance(refusal, Error) and refusal.code is ErrorCode.SHUTTING_DOWN
    daemon.scheduler.abandon_running()
    assert daemon.scheduler.drained
    assert daemon.runs() == ["a"]
