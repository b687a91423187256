"""Jobs without sockets or processes: the states a job goes through (guarded transitions), the
bounded FIFO queue, the finished jobs kept for a while, and when each client was last heard.
Everything here is pure bookkeeping, driven by the scheduler and unit-tested on its own."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from neural_style_protocol.messages import Error, Progress, Result, Submit

Clock = Callable[[], float]
Peer = bytes  # a ROUTER routing id


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"  # asked to stop; the worker finishes its current step
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


_NEXT: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.CANCELLING, JobState.DONE, JobState.FAILED}),
    # A job asked to stop may still finish its last step normally, or its worker may die.
    JobState.CANCELLING: frozenset({JobState.CANCELLED, JobState.DONE, JobState.FAILED}),
    JobState.DONE: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.FAILED: frozenset(),
}
TERMINAL = frozenset({JobState.DONE, JobState.CANCELLED, JobState.FAILED})


class InvalidTransition(RuntimeError):
    """A state change the job's life does not allow: a bug in the caller."""


class QueueFull(Exception):
    """The queue holds its limit of waiting jobs."""


@dataclass(eq=False)
class Job:
    """One job id's life. `watchers` maps each client following it to the msg_id of its submit
    (the parent of every event it gets): a resubmit of the same id from another connection
    joins the job instead of running it twice."""

    job_id: str
    request: Submit | None  # the images; released once the worker has them
    watchers: dict[Peer, str] = field(default_factory=dict)
    state: JobState = JobState.QUEUED
    progress_seq: int = 0
    latest: Progress | None = None
    outcome: Result | Error | None = None  # what the watchers were told at the end
    started_at: float | None = None  # when the worker got it (its wall-time limit counts)
    cancel_requested_at: float | None = None
    timed_out: bool = False  # cancelled for running past the limit: ends as timed_out
    worker_killed: bool = False  # it ignored its cancel, so its worker was killed
    finished_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def move(self, state: JobState) -> None:
        if state not in _NEXT[self.state]:
            raise InvalidTransition(f"job {self.job_id}: {self.state.value} -> {state.value}")
        self.state = state


def _outcome_bytes(job: Job) -> int:
    outcome = job.outcome
    if not isinstance(outcome, Result):
        return 0
    return sum(len(image.data) for image in outcome.images)


class JobBook:
    """The queued jobs (FIFO, bounded), the running one, and finished ones kept for
    `keep_seconds`: at most `keep_max` of them, and images of at most `keep_bytes` in all
    (but always the latest), oldest dropped first. At 8192 px a side one result is 256 MiB:
    a count alone would let a day of large layers hold gigabytes."""

    def __init__(
        self,
        queue_limit: int = 8,
        keep_seconds: float = 300.0,
        keep_max: int = 16,
        clock: Clock = time.monotonic,
        keep_bytes: int = 128 << 20,
    ) -> None:
        if queue_limit < 1 or keep_max < 1 or keep_seconds < 0 or keep_bytes < 0:
            raise ValueError(
                "JobBook needs queue_limit >= 1, keep_max >= 1, keep_seconds >= 0, keep_bytes >= 0"
            )
        self.queue_limit = queue_limit
        self.keep_seconds = keep_seconds
        self.keep_max = keep_max
        self.keep_bytes = keep_bytes
        self.kept_bytes = 0
        self._clock = clock
        self._queue: deque[Job] = deque()
        self.running: Job | None = None
        self._kept: OrderedDict[str, Job] = OrderedDict()

    @property
    def queued(self) -> tuple[Job, ...]:
        return tuple(self._queue)

    def active(self) -> list[Job]:
        """The running job (first) and the queued ones, in order."""
        return ([self.running] if self.running is not None else []) + list(self._queue)

    def find(self, job_id: str) -> Job | None:
        """A queued, running or kept job."""
        for job in self.active():
            if job.job_id == job_id:
                return job
        self.expire()
        return self._kept.get(job_id)

    def add(self, job: Job) -> None:
        """Queue a new job at the end, or QueueFull."""
        if job.state is not JobState.QUEUED or self.find(job.job_id) is not None:
            raise ValueError(f"job {job.job_id} is not a new job")
        if len(self._queue) >= self.queue_limit:
            raise QueueFull(f"the queue holds {self.queue_limit} waiting jobs, its limit")
        self._queue.append(job)

    def position(self, job: Job) -> int:
        """0 for the running job, 1 for the next in line, and so on."""
        if job is self.running:
            return 0
        return self._queue.index(job) + 1

    def start_next(self) -> Job | None:
        """The first queued job, now running; None if one runs already or none waits."""
        if self.running is not None or not self._queue:
            return None
        job = self._queue.popleft()
        job.move(JobState.RUNNING)
        job.started_at = self._clock()
        self.running = job
        return job

    def finish(self, job: Job, state: JobState, outcome: Result | Error) -> None:
        """End a queued or running job and keep it (for resubmits and repeated cancels)."""
        job.move(state)
        if job is self.running:
            self.running = None
        elif job in self._queue:
            self._queue.remove(job)
        job.outcome = outcome
        job.request = None
        job.finished_at = self._clock()
        self.forget(job.job_id)
        self._kept[job.job_id] = job
        self.kept_bytes += _outcome_bytes(job)
        while len(self._kept) > self.keep_max or (
            self.kept_bytes > self.keep_bytes and len(self._kept) > 1
        ):
            self._drop_oldest()

    def forget(self, job_id: str) -> None:
        """Drop a kept job, so that its id can run again."""
        job = self._kept.pop(job_id, None)
        if job is not None:
            self.kept_bytes -= _outcome_bytes(job)

    def _drop_oldest(self) -> None:
        _, job = self._kept.popitem(last=False)
        self.kept_bytes -= _outcome_bytes(job)

    def expire(self) -> None:
        """Drop kept jobs older than `keep_seconds`."""
        cutoff = self._clock() - self.keep_seconds
        while self._kept:
            oldest = next(iter(self._kept.values()))
            if oldest.finished_at is None or oldest.finished_at >= cutoff:
                break
            self._drop_oldest()

    def kept_count(self) -> int:
        return len(self._kept)


class PeerClock:
    """When each client was last heard from: any authentic message counts (our client pings
    every second while it waits for a job)."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[Peer, float] = {}

    def touch(self, peer: Peer) -> None:
        self._seen[peer] = self._clock()

    def forget(self, peer: Peer) -> None:
        self._seen.pop(peer, None)

    def silent(self, peers: Iterable[Peer], timeout: float) -> bool:
        """Whether none of `peers` has been heard within `timeout` seconds (True if none)."""
        now = self._clock()
        return all(now - self._seen.get(peer, -float("inf")) > timeout for peer in peers)

    def prune(self, older_than: float) -> None:
        """Forget clients not heard from for `older_than` seconds (memory stays bounded)."""
        cutoff = self._clock() - older_than
        for peer in [p for p, seen in self._seen.items() if seen < cutoff]:
            del self._seen[peer]

    def __len__(self) -> int:
        return len(self._seen)
