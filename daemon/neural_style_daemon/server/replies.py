"""What the scheduler tells clients, built from its bookkeeping and the worker's events: pure
functions, so that the wording lives in one place and the scheduler keeps to deciding."""

from __future__ import annotations

from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Error, JobStats, Progress, Result
from neural_style_protocol.restart import SHUTDOWN_WARNING

from .events import JobDone, JobProgress
from .jobs import JobState


def progress_message(job_id: str, seq: int, event: JobProgress) -> Progress:
    """The wire's Progress for a worker's report; ProtocolError if the values are refused."""
    return Progress(
        job_id,
        seq,
        event.scale,
        event.scales,
        event.iteration,
        event.iterations,
        event.work_done,
        event.losses,
        event.elapsed,
        event.eta,
        event.preview,
        event.tile,
        event.tiles,
        event.frame,
        event.frames,
        event.frame_image,
        event.live_image,
    )


def result_message(event: JobDone, shutting_down: bool) -> Result:
    """A finished (or cancelled) job's Result, with the worker's warnings and ours."""
    warnings = event.warnings
    if shutting_down and event.cancelled:
        warnings += (SHUTDOWN_WARNING,)  # clients resubmit to the next daemon on seeing it
    return Result(
        event.job_id,
        event.image,
        event.cancelled,
        JobStats(event.steps, event.elapsed, event.peak_memory_bytes, event.target_cache_hits),
        warnings,
        event.sequence,
    )


def unknown_job(job_id: str, keep_seconds: float) -> Error:
    return Error(
        job_id,
        ErrorCode.NOT_FOUND,
        f"no job {job_id} is queued or running (unknown, or finished over {keep_seconds:g} s ago)",
    )


_CANCEL_TOO_LATE = {
    JobState.CANCELLING: (ErrorCode.CANCELLED, "the job is already being cancelled"),
    JobState.CANCELLED: (ErrorCode.CANCELLED, "the job was already cancelled"),
    JobState.DONE: (
        ErrorCode.NOT_FOUND,
        "the job has already finished: nothing to cancel (submit its id again to get the result)",
    ),
    JobState.FAILED: (ErrorCode.NOT_FOUND, "the job has already failed: nothing to cancel"),
}


def cancel_too_late(job_id: str, state: JobState) -> Error:
    """The answer to a cancel of a job that is already stopping or over."""
    code, text = _CANCEL_TOO_LATE[state]
    return Error(job_id, code, text)


def worker_failed_text(failures: int, last_failure: str | None) -> str:
    return (
        f"the worker process failed {failures} times in a row (last: {last_failure}); see "
        f"the daemon's log, then restart the daemon"
    )
