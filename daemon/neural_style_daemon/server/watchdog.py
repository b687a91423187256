"""The scheduler's timers for the running job and the worker process: a job past its wall-time
limit is cancelled (and ends as `timed_out`), a job that ignores its cancel has its worker
killed, and a worker left idle long enough is stopped to give its (GPU) memory back. No
sockets, no torch: driven by `Scheduler.tick` with the scheduler's clock."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Error, WorkerState

from .jobs import Job, JobState

if TYPE_CHECKING:
    from .scheduler import Scheduler

log = logging.getLogger(__name__)


class Watchdog:
    """Checked once a tick; acts through the scheduler's own methods."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.config = scheduler.config
        self.killed_for: str | None = None  # the job whose ignored cancel killed the worker

    def check(self) -> None:
        self._check_time_limit()
        self._check_cancel_grace()
        self._check_idle_unload()

    def _now(self) -> float:
        return self.scheduler.clock()

    def _check_time_limit(self) -> None:
        job, limit = self.scheduler.jobs.running, self.config.job_timeout
        if (
            limit is None
            or job is None
            or job.state is not JobState.RUNNING
            or job.started_at is None
            or self._now() - job.started_at <= limit
        ):
            return
        log.warning("job %s has run for over %g s, its limit: cancelling it", job.job_id, limit)
        job.timed_out = True
        self.scheduler.stop_running(job)

    def _check_cancel_grace(self) -> None:
        job = self.scheduler.jobs.running
        if (
            job is None
            or job.cancel_requested_at is None
            or self.killed_for is not None
            or self._now() - job.cancel_requested_at <= self.config.cancel_grace
        ):
            return
        log.error(
            "job %s ignored its cancel for %g s: killing the worker",
            job.job_id,
            self.config.cancel_grace,
        )
        self.killed_for = job.job_id
        self.scheduler.worker.kill()

    def _check_idle_unload(self) -> None:
        after = self.config.unload_after_idle
        scheduler = self.scheduler
        if (
            after is None
            or scheduler.stopping
            or not scheduler.idle
            or scheduler.worker.state is not WorkerState.IDLE
            or self._now() - scheduler.last_activity < after
        ):
            return
        log.info(
            "no jobs for %g s: stopping the worker to free its memory (the next job "
            "loads the model again)",
            after,
        )
        scheduler.worker.unload()

    def timed_out(self, job: Job, detail: str) -> Error:
        return Error(
            job.job_id,
            ErrorCode.TIMED_OUT,
            f"the job ran past the daemon's limit of {self.config.job_timeout:g} s "
            f"and was stopped{detail}; try fewer iterations or a smaller size",
        )

    def ending_after_death(self, job: Job, how: str) -> tuple[JobState, Error]:
        """How a job ends whose worker process died (`how`: its exit, in words)."""
        if self.killed_for != job.job_id:
            return JobState.FAILED, Error(
                job.job_id,
                ErrorCode.WORKER_FAILED,
                f"the worker process died while running this job ({how})",
            )
        detail = (
            f"; it did not stop within {self.config.cancel_grace:g} s, so its worker was "
            f"restarted (no partial result)"
        )
        if job.timed_out:
            return JobState.FAILED, self.timed_out(job, detail)
        return JobState.CANCELLED, Error(
            job.job_id,
            ErrorCode.CANCELLED,
            f"the job did not stop within "
            f"{self.config.cancel_grace:g} s of being cancelled; its worker was restarted (no "
            f"partial result)",
        )
