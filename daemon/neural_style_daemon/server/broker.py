"""The daemon's loop: one ROUTER socket, the worker's pipe and exit sentinel, and a wake-up
socket for signals, all in one poll. Each message is verified (signature, replay, schema)
before anything acts on it: unauthenticated ones are dropped and logged, other refusals get an
Error reply. Ping and status are answered at once, whatever the worker is doing, because the
worker is a separate process and nothing here waits for it."""

from __future__ import annotations

import logging
import socket as stdlib_socket
import time

import zmq

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.limits import DEFAULT_LIMITS, Limits
from neural_style_protocol.messages import (
    Cancel,
    ClientMessage,
    DaemonMessage,
    Error,
    Ping,
    Pong,
    Shutdown,
    StatusRequest,
    Submit,
)
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.restart import SHUTDOWN_WARNING
from neural_style_protocol.transport import Received, receive, send, server_frame_cap
from neural_style_protocol.wire import Envelope, deserialize_envelope, serialize, split_routing

from .jobs import Clock, Peer
from .scheduler import Scheduler, SchedulerConfig
from .supervisor import WorkerHandle

log = logging.getLogger(__name__)

TICK = 0.25  # seconds between timer checks (heartbeats, kept results, idle exit)
MESSAGES_PER_WAKE = 64  # then the worker's pipe gets its turn
SHUTDOWN_GRACE = 10.0  # seconds the running job gets to stop and return its partial image


class DropLog:
    """Logs dropped (unauthenticated) messages, at most `per_minute` lines a minute, so that a
    flood of garbage cannot fill the disk."""

    def __init__(
        self, per_minute: int = 20, clock: Clock = time.monotonic, label: str = "dropped a message"
    ) -> None:
        self.per_minute, self._clock, self.label = per_minute, clock, label
        self._window_start = -float("inf")
        self._logged = self._suppressed = 0
        self.total = 0

    def note(self, what: str) -> None:
        self.total += 1
        now = self._clock()
        if now - self._window_start >= 60.0:
            if self._suppressed:
                log.warning("%s: %d more in the last minute", self.label, self._suppressed)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        if self._logged < self.per_minute:
            self._logged += 1
            log.warning("%s: %s", self.label, what)
        else:
            self._suppressed += 1


class Broker:
    """Runs until `request_stop` (a signal, a Shutdown message, the idle timer), then shuts
    down in order: queued jobs' clients told, the running job cancelled and reported, the
    worker stopped."""

    def __init__(
        self,
        socket: zmq.Socket,
        key: bytes,
        worker: WorkerHandle,
        config: SchedulerConfig | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        exit_after_idle: float | None = None,
        shutdown_grace: float = SHUTDOWN_GRACE,
        clock: Clock = time.monotonic,
    ) -> None:
        self.socket = socket
        self.worker = worker
        self.scheduler = Scheduler(worker, self._send, config, clock)
        self.drops = DropLog(clock=clock)
        self._key = key
        self._limits = limits
        self._replay = ReplayGuard()
        self._exit_after_idle = exit_after_idle
        self._shutdown_grace = shutdown_grace
        self._clock = clock
        self._stop_reason: str | None = None
        self._stop_deadline = float("inf")

    def request_stop(self, reason: str) -> None:
        """Begin shutting down at the next wake-up. Safe in a signal handler: it only sets a
        field (the wake-up socket ends the poll)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def run(self, wakeup: stdlib_socket.socket | None = None) -> None:
        """Serve until stopped; the worker is started here and always stopped on the way out."""
        self.worker.start()
        try:
            while not self._finished():
                self._poll_once(wakeup)
        finally:
            self.worker.stop()

    def _finished(self) -> bool:
        if self._stop_reason is None:
            return False
        if not self.scheduler.stopping:
            log.info("shutting down (%s)", self._stop_reason)
            self.scheduler.begin_shutdown()
            self._stop_deadline = self._clock() + self._shutdown_grace
        if self.scheduler.drained:
            return True
        if self._clock() >= self._stop_deadline:
            log.warning("the running job did not stop within %g s", self._shutdown_grace)
            self.scheduler.abandon_running()
            return True
        return False

    def _poll_once(self, wakeup: stdlib_socket.socket | None) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        # The worker's handles change when it is restarted: register them afresh each time.
        pipe, sentinel = self.worker.pipe_fd(), self.worker.sentinel()
        for handle in (pipe, sentinel, wakeup.fileno() if wakeup is not None else None):
            if handle is not None:
                poller.register(handle, zmq.POLLIN)
        ready = dict(poller.poll(int(TICK * 1000)))
        if wakeup is not None and wakeup.fileno() in ready:
            _drain(wakeup)
        if self.socket in ready:
            self._read_socket()
        if pipe is not None and pipe in ready:
            self.scheduler.on_worker_events(self.worker.receive())
        if sentinel is not None and sentinel in ready:
            self.scheduler.on_worker_exit()
        self.scheduler.tick()
        self._check_idle()

    def _check_idle(self) -> None:
        idle_for = self._clock() - self.scheduler.last_activity
        if (
            self._exit_after_idle is not None
            and self.scheduler.idle
            and idle_for >= self._exit_after_idle
        ):
            self.request_stop(f"no jobs for {self._exit_after_idle:g} s")

    # ---- messages in ---------------------------------------------------------------------

    def _read_socket(self) -> None:
        for _ in range(MESSAGES_PER_WAKE):
            received = receive(self.socket, server_frame_cap(self._limits))
            if received is None:
                return
            self._on_message(received)

    def _on_message(self, received: Received) -> None:
        if received.dropped:
            self.drops.note(f"{len(received.frames) + received.dropped} frames, over the limit")
            return
        try:
            ids, rest = split_routing(received.frames)
        except ProtocolError as error:
            self.drops.note(str(error))
            return
        if len(ids) != 1:
            self.drops.note(f"{len(ids)} routing ids")
            return
        peer = bytes(ids[0])
        try:
            envelope = deserialize_envelope(
                rest, self._key, self._replay, limits=self._limits, accept=ClientMessage
            )
        except ProtocolError as error:
            if not error.authenticated:
                # No proof that the sender holds the key: no answer, which tells it nothing.
                self.drops.note(f"{error} (from client {peer.hex()})")
                return
            log.info("refused a message from client %s: %s", peer.hex(), error)
            self._send(peer, Error.from_exception(error), error.msg_id)
            return
        self.scheduler.peers.touch(peer)
        self._handle(peer, envelope)

    def _handle(self, peer: Peer, envelope: Envelope) -> None:
        message, msg_id = envelope.message, envelope.header.msg_id
        if isinstance(message, Ping):
            self._send(peer, Pong(), msg_id)
        elif isinstance(message, StatusRequest):
            self._send(peer, self.scheduler.status(), msg_id)
        elif isinstance(message, Submit):
            self.scheduler.submit(peer, msg_id, message)
        elif isinstance(message, Cancel):
            self.scheduler.cancel(peer, msg_id, message.job_id)
        elif isinstance(message, Shutdown):
            log.info("client %s asked the daemon to shut down", peer.hex())
            self._send(peer, Error(None, ErrorCode.SHUTTING_DOWN, SHUTDOWN_WARNING), msg_id)
            self.request_stop("asked by a client")

    # ---- messages out --------------------------------------------------------------------

    def _send(self, peer: Peer, message: DaemonMessage, parent_id: str | None) -> bool:
        """Reply to a client; False if it has disconnected. A client whose queue is full
        (not reading) loses this message: its job's result stays kept for a resubmit."""
        frames = [peer, *serialize(message, self._key, parent_id=parent_id)]
        try:
            send(self.socket, frames)
        except zmq.Again:
            log.warning(
                "client %s is not reading: dropped a %s message", peer.hex(), message.type.value
            )
        except zmq.ZMQError as error:
            if error.errno != zmq.EHOSTUNREACH:
                raise
            return False
        return True


def _drain(wakeup: stdlib_socket.socket) -> None:
    """Empty the signal wake-up socket (the signal handler itself has already run)."""
    try:
        while wakeup.recv(4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
