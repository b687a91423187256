"""The timers of the running job and the worker process, as judgements over plain values: a job
past its wall-time limit is to be cancelled (and ends as `timed_out`), a job that ignores its
cancel has its worker killed, and a worker left idle long enough is stopped to give its (GPU)
memory back. The scheduler gathers what is judged and acts on the verdicts; nothing here holds
or calls it. No sockets, no torch, no clock of its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Error

from .jobs import JobState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchdogLimits:
    job_timeout: float | None  # a job's wall time on the worker; None: no limit
    cancel_grace: float  # a cancelled job that has not stopped by then: kill its worker
    unload_after_idle: float | None  # seconds without jobs, then stop the worker


@dataclass(frozen=True)
class RunningJob:
    """What the watchdog needs to know of the job on the worker."""

    job_id: str
    running_since: float | None  # while it runs uncancelled: when the worker got it
    cancel_requested_at: float | None
    worker_killed: bool  # the watchdog has already had its worker killed


class Verdict(Enum):
    CANCEL_OVERDUE_JOB = "cancel the running job: it is past its time limit"
    KILL_WORKER = "kill the worker: its job ignores the cancel"
    UNLOAD_WORKER = "stop the idle worker to free its memory"


class Watchdog:
    """Judges the daemon's state once a tick; the scheduler carries out the verdicts."""

    def __init__(self, limits: WatchdogLimits) -> None:
        self.limits = limits

    def judge(
        self, now: float, running: RunningJob | None, idle_since: float | None
    ) -> list[Verdict]:
        """The verdicts on the running job (if any) and on an idle worker: `idle_since` is when
        the daemon last had work, given only while it has none and its worker is loaded."""
        verdicts = []
        if running is not None and self._overdue(now, running):
            log.warning(
                "job %s has run for over %g s, its limit: cancelling it",
                running.job_id,
                self.limits.job_timeout,
            )
            verdicts.append(Verdict.CANCEL_OVERDUE_JOB)
        if running is not None and self._ignores_cancel(now, running):
            log.error(
                "job %s ignored its cancel for %g s: killing the worker",
                running.job_id,
                self.limits.cancel_grace,
            )
            verdicts.append(Verdict.KILL_WORKER)
        after = self.limits.unload_after_idle
        if after is not None and idle_since is not None and now - idle_since >= after:
            log.info(
                "no jobs for %g s: stopping the worker to free its memory (the next job "
                "loads the model again)",
                after,
            )
            verdicts.append(Verdict.UNLOAD_WORKER)
        return verdicts

    def _overdue(self, now: float, job: RunningJob) -> bool:
        limit = self.limits.job_timeout
        return (
            limit is not None and job.running_since is not None and now - job.running_since > limit
        )

    def _ignores_cancel(self, now: float, job: RunningJob) -> bool:
        return (
            job.cancel_requested_at is not None
            and not job.worker_killed
            and now - job.cancel_requested_at > self.limits.cancel_grace
        )

    def timed_out(self, job_id: str, detail: str) -> Error:
        """The error of a job stopped for running past its limit (`detail`: how it stopped)."""
        return Error(
            job_id,
            ErrorCode.TIMED_OUT,
            f"the job ran past the daemon's limit of {self.limits.job_timeout:g} s "
            f"and was stopped{detail}; try fewer iterations or a smaller size",
        )

    def ending_after_death(
        self, job_id: str, how: str, *, worker_killed: bool, timed_out: bool
    ) -> tuple[JobState, Error]:
        """How a job ends whose worker process died (`how`: its exit, in words);
        `worker_killed`: the watchdog had it killed for ignoring a cancel."""
        if not worker_killed:
            return JobState.FAILED, Error(
                job_id,
                ErrorCode.WORKER_FAILED,
                f"the worker process died while running this job ({how})",
            )
        grace = self.limits.cancel_grace
        if timed_out:
            detail = (
                f"; it did not stop within {grace:g} s, so its worker was restarted "
                f"(no partial result)"
            )
            return JobState.FAILED, self.timed_out(job_id, detail)
        return JobState.CANCELLED, Error(
            job_id,
            ErrorCode.CANCELLED,
            f"the job did not stop within {grace:g} s of being cancelled; its worker was "
            f"restarted (no partial result)",
        )
