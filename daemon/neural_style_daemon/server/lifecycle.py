"""Running the daemon: never take over a live daemon, bind, then write the connection file
with a fresh key, serve until a signal or a shutdown message, and remove the file on the way
out. The broker process never imports torch: that happens in the spawned worker."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import zmq

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import (
    ConnectionInfo,
    default_connection_file,
    new_key,
    read_connection_file,
    remove_connection_file,
    stale,
    write_connection_file,
)
from neural_style_protocol.errors import ClientError, ConnectionFileError, ConnectionFileMissing
from neural_style_protocol.limits import DEFAULT_LIMITS, Limits
from neural_style_protocol.transport import DEFAULT_ENDPOINT, EndpointError, server_socket

from .. import __version__
from ..errors import DaemonError
from .broker import Broker
from .curve import (
    LOCAL_CLIENT_FILE,
    CurveSetup,
    curve_authenticator,
    load_curve_setup,
    write_local_client,
)
from .events import WorkerConfig
from .scheduler import SchedulerConfig
from .supervisor import WorkerHandle

log = logging.getLogger(__name__)

LOCK_FILE_NAME = "daemon.lock"
LOG_FILE_NAME = "daemon.log"
LIVE_PING_TIMEOUT = 2.0  # seconds a daemon named in an existing file has to answer
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


@dataclass(frozen=True)
class ServeOptions:
    endpoint: str = DEFAULT_ENDPOINT
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    limits: Limits = DEFAULT_LIMITS
    exit_after_idle: float | None = None  # seconds without jobs; None: never
    connection_file: Path | None = None  # None: the user's runtime folder
    curve_keys: Path | None = None  # authenticate clients with CURVE (keys from this folder)


def serve(options: ServeOptions) -> None:
    """Run the daemon until it is stopped; DaemonError if it cannot start."""
    path = options.connection_file or default_connection_file()
    curve = None if options.curve_keys is None else load_curve_setup(options.curve_keys)
    refuse_live_daemon(path)
    with instance_lock(path.with_name(LOCK_FILE_NAME)):
        # Checked again under the lock: another daemon may have finished starting meanwhile.
        refuse_live_daemon(path)
        context = zmq.Context()
        try:
            if curve is None:
                _serve_with(context, path, options)
            else:
                with curve_authenticator(context, curve):
                    _serve_with(context, path, options, curve)
        finally:
            context.destroy(linger=0)


def _serve_with(
    context: zmq.Context, path: Path, options: ServeOptions, curve: CurveSetup | None = None
) -> None:
    try:
        router, endpoint = server_socket(
            context, options.endpoint, options.limits, None if curve is None else curve.server
        )
    except EndpointError as error:
        raise DaemonError(str(error)) from None
    except zmq.ZMQError as error:
        raise DaemonError(f"cannot listen on {options.endpoint}: {error}") from None
    try:
        info = ConnectionInfo(
            endpoint, new_key(), os.getpid(), __version__, transport=endpoint.split("://", 1)[0]
        )
        if curve is not None:
            local = write_local_client(path.with_name(LOCAL_CLIENT_FILE), curve)
            info = replace(
                info,
                curve_server_key=curve.server.public.decode("ascii"),
                curve_client_key_file=str(local),
            )
            log.info(
                "clients are authenticated with CURVE: the daemon's public key is %s; "
                "%d client keys allowed besides this machine's own",
                info.curve_server_key,
                len(curve.allowed),
            )
        broker = Broker(
            router,
            info.key_bytes,
            WorkerHandle(options.worker),
            options.scheduler,
            limits=options.limits,
            exit_after_idle=options.exit_after_idle,
        )
        with stop_on_signals(broker.request_stop) as wakeup:
            # After binding, so that the file never names an endpoint nobody listens on.
            write_connection_file(info, path)
            log.info(
                "neural-style daemon %s (pid %d) listening on %s; connection file %s",
                __version__,
                os.getpid(),
                endpoint,
                path,
            )
            try:
                broker.run(wakeup)
            finally:
                remove_connection_file(path, os.getpid())
        log.info("the daemon has stopped")
    finally:
        router.close(0)


def refuse_live_daemon(path: Path) -> None:
    """DaemonError if the connection file names a daemon that answers a ping; a file left by
    a dead or silent daemon is simply replaced later."""
    try:
        info = read_connection_file(path)
    except ConnectionFileMissing:
        return
    except ConnectionFileError as error:
        log.warning("replacing an unusable connection file: %s", error)
        return
    if stale(info):
        log.info("replacing the connection file of a daemon that has exited (pid %d)", info.pid)
        return
    try:
        with DaemonClient(info) as client:
            client.ping(LIVE_PING_TIMEOUT)
    except ClientError:
        log.warning(
            "the daemon named in %s (pid %d) does not answer: replacing its file", path, info.pid
        )
        return
    raise DaemonError(
        f"a daemon is already running (pid {info.pid}, {info.endpoint}); stop it "
        f"with `neural-style stop` first"
    )


@contextlib.contextmanager
def instance_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` while the daemon runs, so that two daemons started at
    the same moment cannot both pass the live-daemon check. (POSIX; elsewhere the ping check
    alone guards.) The kernel releases it when the process dies, however it dies."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DaemonError(
                f"another daemon is starting or running with this runtime folder "
                f"(it holds {path}); see `neural-style status`"
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[str], None]) -> Iterator[socket.socket]:
    """SIGTERM, SIGINT and SIGHUP call `stop(name)`; the returned socket becomes readable on
    each signal, so a poll that includes it wakes at once."""
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)

    def handle(signum: int, frame: object) -> None:
        stop(signal.Signals(signum).name)

    previous = {number: signal.signal(number, handle) for number in STOP_SIGNALS}
    try:
        yield reader
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        signal.set_wakeup_fd(previous_fd)
        reader.close()
        writer.close()
