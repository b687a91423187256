"""A client of the daemon, for the command line and the GIMP plug-in (Python 3.9, the standard
library and pyzmq only).

One DEALER socket; replies are matched to requests by the header's `parent_id`. Every wait polls
with a timeout, so nothing hangs: a daemon that is gone or silent becomes `DaemonUnavailable` or
`DaemonTimeout`. While a job's events are read, the client pings the daemon every second, which
tells the daemon that the client is still there (it cancels the jobs of clients that go quiet)
and tells the client that the daemon is (its pongs). A job submitted with `resubmit=True`
survives a daemon restart: its stream finds the new daemon through the connection file and
sends it the same job again (see stream.py and restart.py).

Not thread-safe, as ZeroMQ sockets are not: use a client from one thread.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import zmq

from .connection import ConnectionInfo, default_connection_file, read_connection_file, stale
from .errors import (
    ConnectionFileError,
    ConnectionFileMissing,
    DaemonRefused,
    DaemonUnavailable,
    ErrorCode,
    ProtocolError,
)
from .images import BytesLike, RawImage
from .limits import DEFAULT_LIMITS, Limits
from .messages import (
    Cancel,
    DaemonMessage,
    Error,
    Message,
    MessageType,
    Ping,
    Pong,
    Shutdown,
    StatusReply,
    StatusRequest,
    Submit,
)
from .params import JobParams
from .replay import ReplayGuard
from .restart import ResubmitPolicy, Resubmitted
from .stream import ACK_TIMEOUT, JobEvent, JobStream
from .transport import Received, client_curve, client_socket, receive, send
from .version import PROTOCOL_VERSION
from .wire import Envelope, Header, deserialize_envelope, serialize

__all__ = ["DaemonClient", "JobEvent", "JobStream", "ResubmitPolicy", "Resubmitted", "connect"]

log = logging.getLogger(__name__)

Reply = TypeVar("Reply", bound=DaemonMessage)

REQUEST_TIMEOUT = 5.0  # seconds, for ping, status, cancel and shutdown
HEARTBEAT_INTERVAL = 1.0  # seconds between pings while a job's events are awaited
# No word at all from the daemon (its pongs included) for this long: it is gone or hung.
INACTIVITY_TIMEOUT = 15.0


class DaemonClient:
    """Talks to one daemon. Use `connect()` (or `from_connection_file`) to find it.

    `connection_file` (set by those two) is where a restarted daemon is looked for; without it
    a job cannot be resubmitted.
    """

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        limits: Limits = DEFAULT_LIMITS,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        context: zmq.Context | None = None,
        connection_file: Path | str | None = None,
    ) -> None:
        curve = client_curve(info)  # before anything needs closing: a bad certificate raises
        self.info = info
        self.connection_file = Path(connection_file) if connection_file is not None else None
        self.generation = 0  # how many times this client has moved to a restarted daemon
        self.heartbeat_interval = heartbeat_interval
        self._key = info.key_bytes
        self._limits = limits
        self._own_context = context is None
        self._context = zmq.Context() if context is None else context
        self._socket: zmq.Socket | None = client_socket(self._context, info.endpoint, limits, curve)
        self._replay = ReplayGuard()
        self._replies: dict[str, deque[Envelope]] = {}  # by the msg_id of the request
        self.last_heard = -math.inf  # time.monotonic() of the daemon's latest message
        self._last_ping = -math.inf

    @classmethod
    def from_connection_file(
        cls, path: Path | str | None = None, **options: object
    ) -> DaemonClient:
        """A client for the daemon named in the connection file (by default the user's), or
        DaemonUnavailable when there is none or its process has exited."""
        try:
            path = Path(path) if path is not None else default_connection_file()
            info = read_connection_file(path)
        except ConnectionFileMissing as error:
            raise DaemonUnavailable(f"no daemon is running: {error}") from None
        except ConnectionFileError as error:
            raise DaemonUnavailable(str(error)) from None
        if info.protocol_version != PROTOCOL_VERSION:
            raise DaemonUnavailable(
                f"the daemon (pid {info.pid}) speaks protocol version "
                f"{info.protocol_version}, this client {PROTOCOL_VERSION}: "
                f"restart the daemon from the same installation"
            )
        if stale(info):
            raise DaemonUnavailable(
                f"no daemon is running: the one that wrote {path} (pid "
                f"{info.pid}) has exited; start one with `neural-style start`"
            )
        # `options` are __init__'s keywords, typed object only to be passed on as they are.
        return cls(info, connection_file=path, **options)  # type: ignore[arg-type]

    def close(self) -> None:
        """Close the socket at once (linger 0: nothing waits for the daemon)."""
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
            if self._own_context:
                self._context.term()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests ------------------------------------------------------------------------

    def ping(self, timeout: float = REQUEST_TIMEOUT) -> float:
        """The round trip in seconds; DaemonUnavailable if no pong comes within `timeout`."""
        start = time.monotonic()
        self._request(Ping(), Pong, timeout)
        return time.monotonic() - start

    def status(self, timeout: float = REQUEST_TIMEOUT) -> StatusReply:
        """The daemon's state: device, model, queue, worker, the running job's progress."""
        return self._request(StatusRequest(), StatusReply, timeout)

    def cancel(self, job_id: str, timeout: float = REQUEST_TIMEOUT) -> Error:
        """Ask for a job to be cancelled. The answer is an Error whose code says what became of
        it: `cancelled` (removed from the queue, or being stopped: the partial result follows
        in the job's own stream) or `not_found` (no such queued or running job)."""
        reply = self._exchange(Cancel(job_id), timeout)
        if not isinstance(reply, Error):
            raise DaemonRefused(ErrorCode.MALFORMED, f"a {reply.type.value} answered a cancel")
        return reply

    def shutdown(self, timeout: float = REQUEST_TIMEOUT) -> None:
        """Ask the daemon to cancel its jobs and exit; returns once it has said it will."""
        reply = self._exchange(Shutdown(), timeout)
        if not (isinstance(reply, Error) and reply.code is ErrorCode.SHUTTING_DOWN):
            raise DaemonRefused(ErrorCode.MALFORMED, f"a {reply.type.value} answered a shutdown")

    def submit(
        self,
        job_id: str,
        content: RawImage,
        styles: Sequence[BytesLike],
        params: JobParams | None = None,
        *,
        style_masks: Sequence[RawImage | None] = (),
        style_source_masks: Sequence[RawImage | None] = (),
        sequence: Sequence[RawImage] = (),
        timeout: float | None = None,
        inactivity_timeout: float = INACTIVITY_TIMEOUT,
        should_cancel: Callable[[], bool] | None = None,
        resubmit: bool | ResubmitPolicy = False,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> JobStream:
        """Send a job (RGBA content, encoded style files) and return its event stream.
        `style_masks` and `style_source_masks` (grey RawImages; see Submit) are optional;
        `sequence`, the frames of an animation after `content`, makes it a sequence.

        Submitting an id the daemon already knows is safe: a finished job's kept result comes
        back without a second run, a queued or running one is joined. `timeout` caps the whole
        job (then it is cancelled); `should_cancel` is asked about ten times a second.
        `resubmit` (True for the default ResubmitPolicy): if the daemon goes away, wait for a
        restarted one and send it the same job, instead of failing at once. A daemon that has
        not answered the submit at all after `ack_timeout` seconds (it drops unread what it
        cannot accept) ends the stream with DaemonTimeout.
        """
        message = Submit(
            job_id,
            content,
            tuple(styles),
            params or JobParams(),
            tuple(style_masks),
            tuple(style_source_masks),
            tuple(sequence),
        )
        policy = ResubmitPolicy() if resubmit is True else (resubmit or None)
        msg_id = self.send_message(message)
        return JobStream(
            self,
            message,
            msg_id,
            timeout=timeout,
            inactivity_timeout=inactivity_timeout,
            should_cancel=should_cancel,
            resubmit=policy,
            ack_timeout=ack_timeout,
        )

    # ---- what a JobStream uses (stream.StreamClient) ----------------------------------------

    def replies_to(self, msg_id: str) -> deque[Envelope] | None:
        """The replies filed so far under the request `msg_id`, oldest first; None once they
        are no longer kept."""
        return self._replies.get(msg_id)

    def forget_replies(self, msg_id: str) -> None:
        """Stop keeping replies to the request `msg_id` (later ones are dropped)."""
        self._replies.pop(msg_id, None)

    def switch_to(self, info: ConnectionInfo) -> None:
        """Leave a daemon that is gone for its successor (a new socket, endpoint and key).
        Requests in flight to the old one get no answer; job streams resubmit theirs."""
        old = self._live_socket()
        self._socket = client_socket(self._context, info.endpoint, self._limits, client_curve(info))
        old.close(0)
        self.info, self._key = info, info.key_bytes
        self.generation += 1
        self.last_heard = -math.inf
        self._last_ping = -math.inf

    def send_message(self, message: Message, *, expect_reply: bool = True) -> str:
        """Sign and send; replies to it are kept (under its msg_id) only if `expect_reply`."""
        msg_id = uuid.uuid4().hex
        frames = serialize(message, self._key, msg_id=msg_id)
        try:
            send(self._live_socket(), frames)
        except zmq.Again:
            # Under CURVE a refused key looks the same: the handshake never completes.
            cause = (
                "is it hung, or does it not allow this client's CURVE key?"
                if self.info.curve_server_key
                else "is it hung?"
            )
            raise DaemonUnavailable(
                f"the daemon at {self.info.endpoint} is not taking messages "
                f"(pid {self.info.pid}): {cause}"
            ) from None
        if expect_reply:
            self._replies[msg_id] = deque()
        return msg_id

    def heartbeat(self) -> float:
        """Ping if it is time; the seconds until the next ping is due."""
        now = time.monotonic()
        if now - self._last_ping >= self.heartbeat_interval:
            self.send_message(Ping(), expect_reply=False)  # its pong only refreshes last_heard
            self._last_ping = now
        return self._last_ping + self.heartbeat_interval - now

    def pump(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for messages; file each under its request."""
        socket = self._live_socket()
        if not socket.poll(max(1, math.ceil(timeout * 1000))):
            return
        while True:
            received = receive(socket, self._limits.max_frames)
            if received is None:
                return
            self._file(received)

    # ---- internals -----------------------------------------------------------------------

    def _live_socket(self) -> zmq.Socket:
        if self._socket is None:
            raise DaemonUnavailable("this client has been closed")
        return self._socket

    def _exchange(self, message: Message, timeout: float) -> DaemonMessage:
        msg_id = self.send_message(message)
        try:
            envelope = self._wait_for(msg_id, time.monotonic() + timeout)
        finally:
            self._replies.pop(msg_id, None)
        if envelope is None:
            raise DaemonUnavailable(
                f"no answer from the daemon at {self.info.endpoint} (pid "
                f"{self.info.pid}) within {timeout:g} s"
            )
        # Only daemon messages are filed under a request (the decoder refuses the rest).
        return envelope.message  # type: ignore[return-value]

    def _request(self, message: Message, expected: type[Reply], timeout: float) -> Reply:
        reply = self._exchange(message, timeout)
        if isinstance(reply, expected):
            return reply
        if isinstance(reply, Error):
            raise DaemonRefused(reply.code, reply.message)
        raise DaemonRefused(
            ErrorCode.MALFORMED, f"a {reply.type.value} answered a {message.type.value}"
        )

    def _wait_for(self, msg_id: str, deadline: float) -> Envelope | None:
        """The next reply to `msg_id`, or None at the deadline."""
        box = self._replies[msg_id]
        while not box:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.pump(left)
        return box.popleft()

    def _file(self, received: Received) -> None:
        if received.dropped:
            log.warning("ignored a message of too many frames from the daemon")
            return
        try:
            envelope = deserialize_envelope(
                received.frames, self._key, self._replay, limits=self._limits, accept=DaemonMessage
            )
        except ProtocolError as error:
            log.warning("ignored a message from the daemon: %s", error)
            self._fail_request(error)
            return
        self.last_heard = time.monotonic()
        box = self._replies.get(envelope.header.parent_id or "")
        if box is not None:
            box.append(envelope)

    def _fail_request(self, error: ProtocolError) -> None:
        """A signed reply this client cannot read (a daemon of another version, say) ends the
        request it answers with an Error, instead of leaving the caller waiting for ever."""
        box = self._replies.get(error.parent_id or "")
        if not error.authenticated or box is None:
            return
        self.last_heard = time.monotonic()
        header = Header(
            MessageType.ERROR, uuid.uuid4().hex, uuid.uuid4().hex, time.time(), error.parent_id
        )
        box.append(
            Envelope(
                header,
                Error(
                    error.job_id,
                    ErrorCode.MALFORMED,
                    (
                        f"the daemon sent a reply this client cannot read ({error}); are the "
                        f"client and the daemon (pid {self.info.pid}) the same version?"
                    ),
                ),
            )
        )


def connect(
    path: Path | str | None = None, *, timeout: float = 2.0, **options: object
) -> DaemonClient:
    """A client for the running daemon, checked with a ping; DaemonUnavailable otherwise."""
    client = DaemonClient.from_connection_file(path, **options)
    try:
        client.ping(timeout)
    except BaseException:
        client.close()
        raise
    return client
