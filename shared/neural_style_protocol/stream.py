"""The events of one submitted job, as `DaemonClient.submit` returns them: an iterator that
keeps the heartbeat going while it waits and turns a silent daemon into DaemonTimeout."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

from .errors import DaemonRefused, DaemonTimeout, DaemonUnavailable, ErrorCode
from .messages import Accepted, Cancel, Error, Progress, Result
from .wire import Envelope

if TYPE_CHECKING:
    from .client import DaemonClient

JobEvent = Union[Accepted, Progress, Result, Error]

CANCEL_POLL = 0.1  # seconds between calls of a job's `should_cancel`


class JobStream:
    """The events of one submitted job, in order: Accepted, Progress..., then a Result (also
    for a cancelled job: the partial image, `cancelled=True`) or an Error, which ends it.

    Iterating keeps the heartbeat going. Leaving a `with` block early cancels the job.
    """

    def __init__(
        self,
        client: DaemonClient,
        job_id: str,
        msg_id: str,
        *,
        timeout: float | None,
        inactivity_timeout: float,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.job_id = job_id
        self.cancel_sent = False
        self._client = client
        self._msg_id = msg_id
        self._started = time.monotonic()
        self._timeout = timeout
        self._inactivity_timeout = inactivity_timeout
        self._should_cancel = should_cancel
        self._done = False

    def __iter__(self) -> JobStream:
        return self

    def __next__(self) -> JobEvent:
        if self._done:
            raise StopIteration
        envelope = self._next_envelope()
        message = envelope.message
        if isinstance(message, (Result, Error)):
            self._finish()
        return message  # type: ignore[return-value]

    def __enter__(self) -> JobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Ask for the job to stop; its outcome still arrives in this stream."""
        if not self._done and not self.cancel_sent:
            self.cancel_sent = True
            self._client._send(Cancel(self.job_id), expect_reply=False)

    def close(self) -> None:
        """Stop reading; an unfinished job is cancelled (as if the user had asked)."""
        if not self._done:
            # Gone or closed: the daemon notices the missing heartbeat instead.
            with contextlib.suppress(DaemonUnavailable):
                self.cancel()
            self._finish()

    def result(self, on_event: Callable[[JobEvent], None] | None = None) -> Result:
        """Read to the end: the Result, or DaemonRefused with the daemon's error."""
        for event in self:
            if on_event is not None:
                on_event(event)
            if isinstance(event, Result):
                return event
            if isinstance(event, Error):
                raise DaemonRefused(event.code, event.message)
        raise DaemonRefused(ErrorCode.INTERNAL, f"the events of job {self.job_id} have been read")

    def _finish(self) -> None:
        self._done = True
        self._client._replies.pop(self._msg_id, None)

    def _next_envelope(self) -> Envelope:
        client = self._client
        box = client._replies.get(self._msg_id)
        if box is None:
            raise DaemonUnavailable("this job's events are no longer being read")
        while not box:
            wait = min(client._heartbeat(), self._check_deadlines())
            if self._should_cancel is not None:
                if self._should_cancel():
                    self.cancel()
                wait = min(wait, CANCEL_POLL)
            client._pump(max(wait, 0.0))
        return box.popleft()

    def _check_deadlines(self) -> float:
        """Raise DaemonTimeout when a deadline has passed; else the seconds to the nearest."""
        now = time.monotonic()
        heard = max(self._client.last_heard, self._started)
        quiet_left = heard + self._inactivity_timeout - now
        if quiet_left <= 0:
            self._finish()
            raise DaemonTimeout(f"no word from the daemon at {self._client.info.endpoint} for "
                                f"{self._inactivity_timeout:g} s while waiting for job "
                                f"{self.job_id}: it may have exited or hung (see its log)")
        if self._timeout is None:
            return quiet_left
        job_left = self._started + self._timeout - now
        if job_left <= 0:
            self.cancel()
            self._finish()
            raise DaemonTimeout(f"job {self.job_id} took longer than {self._timeout:g} s; "
                                f"asked the daemon to cancel it")
        return min(quiet_left, job_left)
