"""What happens to jobs, without sockets: submits, cancels, the worker's events and its deaths,
clients that go quiet, shutdown. Replies go out through a `send` callable (the broker's), which
says whether the client is still there."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import (
    Accepted,
    DaemonMessage,
    Error,
    Result,
    StatusReply,
    Submit,
    WorkerState,
)
from neural_style_protocol.restart import SHUTDOWN_WARNING

from .. import __version__
from .events import (
    FromWorker,
    JobDone,
    JobFailed,
    JobProgress,
    RunJob,
    WorkerReady,
    WorkerStartFailed,
)
from .jobs import Clock, Job, JobBook, JobState, Peer, PeerClock, QueueFull
from .replies import (
    cancel_too_late,
    progress_message,
    result_message,
    unknown_job,
    worker_failed_text,
)
from .supervisor import WorkerHandle
from .watchdog import RunningJob, Verdict, Watchdog, WatchdogLimits

log = logging.getLogger(__name__)

# Sends a message to a client as a reply to `parent_id`; False when that client is gone.
Send = Callable[[Peer, DaemonMessage, "str | None"], bool]


@dataclass(frozen=True)
class SchedulerConfig:
    queue_limit: int = 8  # jobs waiting behind the running one
    client_timeout: float = 10.0  # no word from any client of a job this long: cancel it
    keep_seconds: float = 300.0  # finished jobs answer resubmits and cancels this long
    keep_max: int = 16
    keep_bytes: int = 128 << 20  # result images kept in all (the latest is always kept)
    cancel_grace: float = 30.0  # a cancelled job that has not stopped by then: kill its worker
    job_timeout: float | None = 1800.0  # a job's wall time on the worker; None: no limit
    unload_after_idle: float | None = None  # seconds without jobs, then stop the worker


class Scheduler:
    """One job at a time on the worker, the rest queued; every job ends in exactly one Result
    or Error sent to each client following it."""

    def __init__(
        self,
        worker: WorkerHandle,
        send: Send,
        config: SchedulerConfig | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config or SchedulerConfig()
        self.worker = worker
        self.jobs = JobBook(
            self.config.queue_limit,
            self.config.keep_seconds,
            self.config.keep_max,
            clock,
            self.config.keep_bytes,
        )
        self.peers = PeerClock(clock)
        self.stopping = False
        self._send = send
        self.clock = clock
        self.last_activity = clock()
        self.watchdog = Watchdog(
            WatchdogLimits(
                self.config.job_timeout, self.config.cancel_grace, self.config.unload_after_idle
            )
        )

    @property
    def idle(self) -> bool:
        return not self.jobs.active()

    # ---- client requests -------------------------------------------------------------------

    def submit(self, peer: Peer, msg_id: str, request: Submit) -> None:
        known = self.jobs.find(request.job_id)
        if known is not None and self._rejoin(peer, msg_id, known):
            return
        refusal = self._refusal(request.job_id)
        if refusal is not None:
            self._send(peer, refusal, msg_id)
            return
        job = Job(request.job_id, request, {peer: msg_id})
        try:
            self.jobs.add(job)
        except QueueFull as full:
            self._send(
                peer,
                Error(job.job_id, ErrorCode.BUSY, f"the daemon is busy: {full}; try again later"),
                msg_id,
            )
            return
        self.last_activity = self.clock()
        self._dispatch()
        self._send(peer, Accepted(job.job_id, self.jobs.position(job)), msg_id)

    def _rejoin(self, peer: Peer, msg_id: str, job: Job) -> bool:
        """A known id: resend a kept result or join a live job (True), or forget a cancelled or
        failed one so that it runs again (False)."""
        if job.state is JobState.DONE and job.outcome is not None:
            log.info("job %s: sending its kept result again", job.job_id)
            self._send(peer, job.outcome, msg_id)
            return True
        if not job.terminal:
            job.watchers[peer] = msg_id
            self._send(peer, Accepted(job.job_id, self.jobs.position(job)), msg_id)
            return True
        self.jobs.forget(job.job_id)
        return False

    def _refusal(self, job_id: str) -> Error | None:
        if self.stopping:
            return Error(job_id, ErrorCode.SHUTTING_DOWN, SHUTDOWN_WARNING)
        if self.worker.state is WorkerState.FAILED:
            return Error(job_id, ErrorCode.WORKER_FAILED, self._failed_text())
        return None

    def _failed_text(self) -> str:
        return worker_failed_text(self.worker.failures, self.worker.last_failure)

    def cancel(self, peer: Peer, msg_id: str, job_id: str) -> None:
        """Answer with one Error: `cancelled` (done, or under way) or `not_found`."""
        self._send(peer, self._cancel(job_id), msg_id)

    def _cancel(self, job_id: str) -> Error:
        job = self.jobs.find(job_id)
        cancelled = ErrorCode.CANCELLED
        if job is None:
            return unknown_job(job_id, self.config.keep_seconds)
        if job.state is JobState.QUEUED:
            self._end(
                job,
                JobState.CANCELLED,
                Error(job_id, cancelled, "the job was cancelled before it started"),
            )
            return Error(job_id, cancelled, "the job was cancelled before it started")
        if job.state is JobState.RUNNING:
            self.stop_running(job)
            return Error(
                job_id, cancelled, "the job is being cancelled; its partial result follows"
            )
        return cancel_too_late(job_id, job.state)

    def status(self) -> StatusReply:
        running = self.jobs.running
        return StatusReply(
            version=__version__,
            device=self.worker.device,
            model_loaded=self.worker.model_loaded,
            memory_bytes=self.worker.memory_in_use(),
            queue_length=len(self.jobs.queued),
            queue_limit=self.config.queue_limit,
            worker_state=self.worker.state,
            running=running.latest if running is not None else None,
        )

    # ---- the worker ----------------------------------------------------------------------

    def on_worker_events(self, events: list[FromWorker]) -> None:
        for event in events:
            if isinstance(event, WorkerReady):
                self.worker.ready(event)
                log.info("the worker is ready on %s (pid %d)", event.device, event.pid)
                self._dispatch()
            elif isinstance(event, WorkerStartFailed):
                self.worker.note_start_failure(event.message)  # its exit follows
            elif isinstance(event, JobProgress):
                self._on_progress(event)
            elif isinstance(event, JobDone):
                self._on_done(event)
            elif isinstance(event, JobFailed):
                self._on_failed(event)

    def _running(self, job_id: str) -> Job | None:
        job = self.jobs.running
        if job is None or job.job_id != job_id:
            log.warning("the worker spoke of job %s, which is not running", job_id)
            return None
        return job

    def _on_progress(self, event: JobProgress) -> None:
        job = self._running(event.job_id)
        if job is None:
            return
        job.progress_seq += 1
        try:
            progress = progress_message(job.job_id, job.progress_seq, event)
        except ProtocolError as error:
            log.warning("job %s: dropped a progress report: %s", job.job_id, error)
            return
        # Status stays small: no images.
        job.latest = replace(progress, preview=None, frame_image=None, live_image=None)
        self.worker.memory_bytes = event.peak_memory_bytes
        self._broadcast(job, progress)

    def _on_done(self, event: JobDone) -> None:
        job = self._running(event.job_id)
        if job is None:
            return
        if event.style_cache_hits or event.target_cache_hits:
            log.info(
                "job %s: %d style image(s) and %d loss targets came from the caches",
                job.job_id,
                event.style_cache_hits,
                event.target_cache_hits,
            )
        result = result_message(event, self.stopping)
        if event.memory_bytes is not None:
            self.worker.memory_bytes = event.memory_bytes
        if event.cancelled and job.state is JobState.RUNNING:
            job.move(JobState.CANCELLING)  # stopped by the worker itself (told to exit)
        self.worker.job_ended(healthy=True)
        if event.cancelled and job.timed_out:
            self._end(job, JobState.FAILED, self.watchdog.timed_out(job.job_id, ""))
        else:
            self._end(job, JobState.CANCELLED if event.cancelled else JobState.DONE, result)
        log.info(
            "job %s %s after %d steps (%.1f s)",
            job.job_id,
            "cancelled" if event.cancelled else "done",
            event.steps,
            event.elapsed,
        )
        self._dispatch()

    def _on_failed(self, event: JobFailed) -> None:
        job = self._running(event.job_id)
        if job is None:
            return
        log.info("job %s failed: %s: %s", job.job_id, event.code.value, event.message)
        self.worker.job_ended(healthy=True)  # it reported the failure: the process is fine
        self._end(job, JobState.FAILED, Error(job.job_id, event.code, event.message))
        self._dispatch()

    def on_worker_exit(self) -> None:
        """The worker process ended: end its job, then restart it or give up."""
        self.on_worker_events(self.worker.receive())  # what it said before it died
        how = self.worker.reap()
        job = self.jobs.running
        if job is not None:
            ending = self.watchdog.ending_after_death(
                job.job_id, how, worker_killed=job.worker_killed, timed_out=job.timed_out
            )
            self._end(job, *ending)
        if self.worker.state is WorkerState.FAILED:
            for queued in self.jobs.queued:
                self._end(
                    queued,
                    JobState.FAILED,
                    Error(queued.job_id, ErrorCode.WORKER_FAILED, self._failed_text()),
                )
        elif self.worker.state is WorkerState.STOPPED:
            self._dispatch()  # it was unloaded: start a fresh one only for a waiting job
        elif not self.stopping:
            self.worker.start()

    def _dispatch(self) -> None:
        """Give the next queued job to the worker if it is idle; start a worker stopped when
        idle (the job waits in the queue while the model loads)."""
        if self.stopping:
            return
        if (
            self.worker.state is WorkerState.STOPPED
            and self.jobs.queued
            and not self.worker.exiting
        ):  # else its exit calls back here
            log.info(
                "job %s: loading the model again (it was unloaded when idle)",
                self.jobs.queued[0].job_id,
            )
            self.worker.start()
        if self.worker.state is not WorkerState.IDLE:
            return
        job = self.jobs.start_next()
        if job is None:
            return
        request, job.request = job.request, None  # the worker holds the images from now on
        assert request is not None
        self.worker.run(
            RunJob(
                job.job_id,
                _copied(request.content),
                tuple(bytes(style) for style in request.styles),
                request.params,
                _copied_masks(request.style_masks),
                _copied_masks(request.style_source_masks),
                tuple(_copied(frame) for frame in request.sequence),
            )
        )
        log.info("job %s started", job.job_id)

    # ---- endings -------------------------------------------------------------------------

    def _end(self, job: Job, state: JobState, outcome: Result | Error) -> None:
        self.jobs.finish(job, state, outcome)
        self.last_activity = self.clock()
        self._broadcast(job, outcome)

    def _broadcast(self, job: Job, message: DaemonMessage) -> None:
        for peer, parent_id in list(job.watchers.items()):
            if not self._send(peer, message, parent_id):
                log.info("job %s: client %s has disconnected", job.job_id, peer.hex())
                del job.watchers[peer]
        if not job.terminal and not job.watchers:
            self._abandon(job, "its client disconnected")

    def _abandon(self, job: Job, why: str) -> None:
        """A job nobody waits for any more (GIMP killed the plug-in): cancel it."""
        log.info("job %s: cancelling it, %s", job.job_id, why)
        if job.state is JobState.QUEUED:
            self._end(
                job,
                JobState.CANCELLED,
                Error(job.job_id, ErrorCode.CANCELLED, f"the job was cancelled: {why}"),
            )
        elif job.state is JobState.RUNNING:
            self.stop_running(job)

    def stop_running(self, job: Job) -> None:
        job.move(JobState.CANCELLING)
        job.cancel_requested_at = self.clock()
        self.worker.cancel(job.job_id)

    def tick(self) -> None:
        """Timers: forget old results, cancel jobs of silent clients; then the watchdog's."""
        self.jobs.expire()
        timeout = self.config.client_timeout
        self.peers.prune(older_than=max(10 * timeout, 600.0))
        for job in self.jobs.active():
            if job.state is not JobState.CANCELLING and self.peers.silent(job.watchers, timeout):
                self._abandon(job, f"no word from its client for {timeout:g} s")
        self._act_on(self.watchdog.judge(self.clock(), self._watched_job(), self._idle_since()))

    def _watched_job(self) -> RunningJob | None:
        job = self.jobs.running
        if job is None:
            return None
        running = job.state is JobState.RUNNING
        return RunningJob(
            job.job_id,
            job.started_at if running else None,
            job.cancel_requested_at,
            job.worker_killed,
        )

    def _idle_since(self) -> float | None:
        """When the daemon last had work, while it has none and its worker is loaded."""
        if self.stopping or not self.idle or self.worker.state is not WorkerState.IDLE:
            return None
        return self.last_activity

    def _act_on(self, verdicts: list[Verdict]) -> None:
        job = self.jobs.running
        for verdict in verdicts:
            if verdict is Verdict.CANCEL_OVERDUE_JOB and job is not None:
                job.timed_out = True
                self.stop_running(job)
            elif verdict is Verdict.KILL_WORKER and job is not None:
                job.worker_killed = True
                self.worker.kill()
            elif verdict is Verdict.UNLOAD_WORKER:
                self.worker.unload()

    # ---- shutdown ------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Tell the queued jobs' clients, and ask the running job to stop (its partial result
        still goes out, marked cancelled)."""
        self.stopping = True
        for job in self.jobs.queued:
            self._end(
                job,
                JobState.CANCELLED,
                Error(
                    job.job_id,
                    ErrorCode.SHUTTING_DOWN,
                    "the daemon is shutting down; the job never started",
                ),
            )
        running = self.jobs.running
        if running is not None and running.state is JobState.RUNNING:
            self.stop_running(running)

    @property
    def drained(self) -> bool:
        return self.jobs.running is None

    def abandon_running(self) -> None:
        """Shutdown's grace has passed: tell the running job's clients it is over."""
        job = self.jobs.running
        if job is not None:
            self._end(
                job,
                JobState.CANCELLED,
                Error(
                    job.job_id,
                    ErrorCode.SHUTTING_DOWN,
                    "the daemon shut down before the job could stop",
                ),
            )


def _copied(image: RawImage) -> RawImage:
    """Received frames are views of ZeroMQ buffers: copy them into the pipe's bytes."""
    return RawImage(bytes(image.data), image.width, image.height, image.channels)


def _copied_masks(masks: tuple[RawImage | None, ...]) -> tuple[RawImage | None, ...]:
    return tuple(None if mask is None else _copied(mask) for mask in masks)
