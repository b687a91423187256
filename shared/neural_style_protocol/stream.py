"""The events of one submitted job, as `DaemonClient.submit` returns them: an iterator that
keeps the heartbeat going while it waits, turns a silent daemon into DaemonTimeout and, when
allowed, resubmits the job to a daemon that was restarted meanwhile."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Union

from .connection import ConnectionInfo
from .errors import DaemonRefused, DaemonTimeout, DaemonUnavailable, ErrorCode
from .messages import Accepted, Cancel, Error, Message, Progress, Result, Submit
from .restart import (
    ResubmitPolicy,
    Resubmitted,
    await_successor,
    departure,
    ended_by_shutdown,
    same_daemon,
)
from .wire import Envelope

JobEvent = Union[Accepted, Progress, Result, Error, Resubmitted]

log = logging.getLogger(__name__)

CANCEL_POLL = 0.1  # seconds between calls of a job's `should_cancel`
# A daemon answers every submit it reads at once (Accepted, or an Error). One it drops unread
# (over its size limits, or signed with another key) gets no answer by design, while its pongs
# keep coming: without this bound such a job would be waited for forever.
ACK_TIMEOUT = 20.0
FILE_CHECK = 1.0  # seconds between looks at the connection file while resubmitting is allowed


class StreamClient(Protocol):
    """What a JobStream needs of the client it reads through (DaemonClient is the one): the
    daemon it talks to, sending, waiting, and the replies it files under each request."""

    info: ConnectionInfo
    connection_file: Path | None  # where a restarted daemon is looked for
    generation: int  # how many times the client has moved to a restarted daemon
    last_heard: float  # time.monotonic() of the daemon's latest message

    def send_message(self, message: Message, *, expect_reply: bool = True) -> str:
        """Send; its msg_id, under which replies are kept if `expect_reply`."""
        ...

    def replies_to(self, msg_id: str) -> deque[Envelope] | None: ...

    def forget_replies(self, msg_id: str) -> None: ...

    def heartbeat(self) -> float:
        """Ping if it is time; the seconds until the next ping is due."""
        ...

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for messages and file them."""
        ...

    def switch_to(self, info: ConnectionInfo) -> None:
        """Move to a restarted daemon."""
        ...


class JobStream:
    """The events of one submitted job, in order: Accepted, Progress..., then a Result (also
    for a cancelled job: the partial image, `cancelled=True`) or an Error, which ends it.
    With a ResubmitPolicy, a Resubmitted event may come between them: the daemon went away and
    the job was sent again, its events start over.

    Iterating keeps the heartbeat going. Leaving a `with` block early cancels the job.
    """

    def __init__(
        self,
        client: StreamClient,
        submit: Submit,
        msg_id: str,
        *,
        timeout: float | None,
        inactivity_timeout: float,
        should_cancel: Callable[[], bool] | None,
        resubmit: ResubmitPolicy | None = None,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self.job_id = submit.job_id
        self.cancel_sent = False
        self.resubmits = 0
        self._client = client
        # Kept for a resubmit: the inputs are bytes already, so sending them again is cheap.
        self._submit = submit
        self._msg_id = msg_id
        self._daemon = client.info  # the daemon this job was last sent to
        self._generation = client.generation
        self._started = time.monotonic()
        self._since = self._started  # when the current daemon was given the job
        self._next_file_check = self._started + FILE_CHECK
        self._timeout = timeout
        self._inactivity_timeout = inactivity_timeout
        self._should_cancel = should_cancel
        self._policy = resubmit
        self._ack_timeout = ack_timeout
        self._acknowledged = False  # any answer to the current submit
        self._done = False

    def __iter__(self) -> JobStream:
        return self

    def __next__(self) -> JobEvent:
        if self._done:
            raise StopIteration
        event = self._next_event()
        if isinstance(event, (Result, Error)):
            self._finish()
        return event

    def __enter__(self) -> JobStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Ask for the job to stop; its outcome still arrives in this stream."""
        if not self._done and not self.cancel_sent:
            self.cancel_sent = True
            self._client.send_message(Cancel(self.job_id), expect_reply=False)

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
        self._client.forget_replies(self._msg_id)

    def _next_event(self) -> JobEvent:
        box = self._client.replies_to(self._msg_id)
        if box is None:
            raise DaemonUnavailable("this job's events are no longer being read")
        while not box:
            gone = self._wait_round()
            if gone is not None:
                return self._recover(*gone)
        message = box.popleft().message
        self._acknowledged = True
        if self._may_resubmit() and ended_by_shutdown(message, self.cancel_sent):
            # `stop` then `start`: the partial result (or `shutting_down`) is kept in case no
            # new daemon comes.
            note = self._resubmit_after(f"the daemon (pid {self._daemon.pid}) shut down")
            if note is not None:
                return note
        # Only a job's events are filed under its submit (the decoder refuses the rest).
        return message  # type: ignore[return-value]

    def _wait_round(self) -> tuple[str, bool] | None:
        """Heartbeat, cancel check and one wait for messages; (why, silent) when the daemon is
        known to be gone, else None."""
        client = self._client
        if client.generation != self._generation:
            # Another stream of this client has moved it to a restarted daemon.
            return f"this client moved to the daemon at {client.info.endpoint}", False
        wait = self._check_deadlines()
        if wait <= 0:
            return (
                f"no word from the daemon at {self._daemon.endpoint} for "
                f"{self._inactivity_timeout:g} s"
            ), True
        wait = min(wait, client.heartbeat())
        if self._should_cancel is not None:
            if self._should_cancel():
                self.cancel()
            wait = min(wait, CANCEL_POLL)
        client.pump(max(wait, 0.0))
        return self._departure()

    def _departure(self) -> tuple[str, bool] | None:
        """A look at the connection file, now and then, while a resubmit is allowed: a daemon
        that was killed is noticed at once instead of after the inactivity timeout."""
        now = time.monotonic()
        path = self._client.connection_file
        if path is None or now < self._next_file_check or not self._may_resubmit():
            return None
        self._next_file_check = now + FILE_CHECK
        if self._client.replies_to(self._msg_id):
            return None  # its last words arrived: read them first
        why = departure(path, self._daemon)
        return None if why is None else (why, False)

    def _check_deadlines(self) -> float:
        """Raise DaemonTimeout when the job has run over its time; else the seconds to the
        nearest deadline (zero or less: the daemon has been silent too long)."""
        now = time.monotonic()
        heard = max(self._client.last_heard, self._since)
        quiet_left = heard + self._inactivity_timeout - now
        if not self._acknowledged:
            ack_left = self._since + self._ack_timeout - now
            if ack_left <= 0:
                self._finish()
                raise DaemonTimeout(
                    f"the daemon at {self._daemon.endpoint} did not acknowledge job "
                    f"{self.job_id} within {self._ack_timeout:g} s; it drops unread what it "
                    f"cannot accept (images over its size limit, a message signed with "
                    f"another key): its log says which"
                )
            quiet_left = min(quiet_left, ack_left)
        if self._timeout is None:
            return quiet_left
        job_left = self._started + self._timeout - now
        if job_left <= 0:
            self.cancel()
            self._finish()
            raise DaemonTimeout(
                f"job {self.job_id} took longer than {self._timeout:g} s; "
                f"asked the daemon to cancel it"
            )
        return min(quiet_left, job_left)

    def _may_resubmit(self) -> bool:
        return (
            self._policy is not None
            and not self.cancel_sent
            and self.resubmits < self._policy.attempts
            and self._client.connection_file is not None
        )

    def _recover(self, why: str, silent: bool) -> Resubmitted:
        """Resubmit to a restarted daemon, or raise the error that says what happened."""
        error = DaemonTimeout if silent else DaemonUnavailable
        if not self._may_resubmit():
            self._finish()
            hint = ": it may have exited or hung (see its log)" if silent else ""
            raise error(f"{why} while waiting for job {self.job_id}{hint}")
        note = self._resubmit_after(why)
        if note is None:
            self._finish()
            wait = self._policy.wait if self._policy is not None else 0.0
            raise error(
                f"{why} while waiting for job {self.job_id}, and no new daemon was "
                f"started within {wait:g} s (start one with `neural-style start`)"
            )
        return note

    def _resubmit_after(self, why: str) -> Resubmitted | None:
        """Wait for a new daemon and send it the same job; None if none came in time."""
        assert self._policy is not None
        client = self._client
        path = client.connection_file
        assert path is not None
        deadline = time.monotonic() + self._policy.wait
        if self._timeout is not None:
            deadline = min(deadline, self._started + self._timeout)
        if same_daemon(client.info, self._daemon):
            log.warning(
                "%s; waiting up to %g s for a new daemon to resubmit job %s to",
                why,
                self._policy.wait,
                self.job_id,
            )
            found = await_successor(path, self._daemon, deadline, self._should_cancel)
            if found is None:
                log.warning("%s; no new daemon within %g s", why, self._policy.wait)
                return None
            client.switch_to(found)
        client.forget_replies(self._msg_id)
        self._msg_id = client.send_message(self._submit)
        self._daemon, self._generation = client.info, client.generation
        self._since = time.monotonic()
        self._acknowledged = False
        self.resubmits += 1
        note = Resubmitted(self.job_id, self.resubmits, why, client.info.endpoint, client.info.pid)
        log.info("%s", note)  # the caller sees the event and says so its own way
        return note
