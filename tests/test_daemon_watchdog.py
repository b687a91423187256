"""The watchdog's judgements over plain values: the time limit, the cancel grace, the idle
unload, and how a job ends when its worker dies."""

from __future__ import annotations

from neural_style_daemon.server.jobs import JobState
from neural_style_daemon.server.watchdog import RunningJob, Verdict, Watchdog, WatchdogLimits
from neural_style_protocol.errors import ErrorCode

WATCHDOG = Watchdog(WatchdogLimits(job_timeout=60.0, cancel_grace=30.0, unload_after_idle=300.0))


def running(since: float | None = 0.0, cancel_at: float | None = None, killed: bool = False):
    return RunningJob(
        "job", running_since=since, cancel_requested_at=cancel_at, worker_killed=killed
    )


def test_nothing_to_judge_gives_no_verdict() -> None:
    assert WATCHDOG.judge(1e6, None, None) == []


def test_a_job_is_cancelled_only_once_past_its_limit() -> None:
    assert WATCHDOG.judge(60.0, running(), None) == []
    assert WATCHDOG.judge(60.5, running(), None) == [Verdict.CANCEL_OVERDUE_JOB]
    # Being cancelled already (no longer running uncancelled): not cancelled again.
    assert WATCHDOG.judge(61.0, running(since=None, cancel_at=60.5), None) == []


def test_no_time_limit_never_cancels() -> None:
    unlimited = Watchdog(
        WatchdogLimits(job_timeout=None, cancel_grace=30.0, unload_after_idle=None)
    )
    assert unlimited.judge(1e9, running(), None) == []


def test_a_job_ignoring_its_cancel_past_the_grace_has_its_worker_killed_once() -> None:
    asked = running(since=None, cancel_at=100.0)
    assert WATCHDOG.judge(130.0, asked, None) == []
    assert WATCHDOG.judge(130.5, asked, None) == [Verdict.KILL_WORKER]
    killed = running(since=None, cancel_at=100.0, killed=True)
    assert WATCHDOG.judge(200.0, killed, None) == []


def test_an_idle_worker_is_unloaded_from_its_idle_time_on() -> None:
    assert WATCHDOG.judge(1299.0, None, idle_since=1000.0) == []
    assert WATCHDOG.judge(1300.0, None, idle_since=1000.0) == [Verdict.UNLOAD_WORKER]
    never = Watchdog(WatchdogLimits(job_timeout=None, cancel_grace=30.0, unload_after_idle=None))
    assert never.judge(1e9, None, idle_since=0.0) == []


def test_a_worker_that_died_on_its_own_fails_the_job() -> None:
    state, error = WATCHDOG.ending_after_death(
        "job", "exit code 1", worker_killed=False, timed_out=True
    )
    assert state is JobState.FAILED and error.code is ErrorCode.WORKER_FAILED
    assert error.message == "the worker process died while running this job (exit code 1)"


def test_a_worker_killed_for_an_ignored_cancel_ends_the_job_as_what_was_asked() -> None:
    state, error = WATCHDOG.ending_after_death(
        "job", "killed by SIGKILL", worker_killed=True, timed_out=False
    )
    assert state is JobState.CANCELLED and error.code is ErrorCode.CANCELLED
    state, error = WATCHDOG.ending_after_death(
        "job", "killed by SIGKILL", worker_killed=True, timed_out=True
    )
    assert state is JobState.FAILED and error.code is ErrorCode.TIMED_OUT
    assert error.message == (
        "the job ran past the daemon's limit of 60 s and was stopped; it did not stop within "
        "30 s, so its worker was restarted (no partial result); try fewer iterations or a "
        "smaller size"
    )
