"""The daemon's commands: `serve` (foreground), `start` (background), `stop`, `status`. Thin
glue: options in, the server's or the client's functions, a few lines out. Nothing here imports
torch, so `status` and `stop` answer in a fraction of a second."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from neural_style_protocol.client import DaemonClient, connect
from neural_style_protocol.connection import (
    ConnectionInfo,
    default_connection_file,
    is_process_alive,
    read_connection_file,
    runtime_dir,
)
from neural_style_protocol.errors import ClientError, ConnectionFileError, DaemonUnavailable
from neural_style_protocol.messages import Progress, StatusReply
from neural_style_protocol.version import PROTOCOL_VERSION

from .console import EXIT_NOT_RUNNING
from .errors import DaemonError
from .serve_options import (
    add_serve_options,
    check_listen,
    limits_for,
    serve_argv,
    serve_options,
)

START_TIMEOUT = 60.0  # seconds for `start` to see the daemon answer
STOP_TIMEOUT = 30.0  # seconds for `stop` to see it exit
LOG_FILE_NAME = "daemon.log"
LOG_ROTATE_BYTES = 4 << 20

DAEMON_COMMANDS = ("serve", "start", "stop", "status")


def add_daemon_commands(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run the daemon in the foreground",
        description="Keep the model warm and serve jobs to the GIMP plug-in and `stylize`, "
        "until Ctrl-C, SIGTERM or `neural-style stop`.",
    )
    add_serve_options(serve)
    serve.add_argument(
        "--log-file",
        type=Path,
        help=f"log here as well as to stderr (default: {LOG_FILE_NAME} in the runtime folder)",
    )
    serve.add_argument("--no-log-file", action="store_true", help="log to stderr only")
    serve.set_defaults(handler=run_serve)
    start = subparsers.add_parser(
        "start",
        help="start the daemon in the background (if none is running)",
        description="Start `serve` as a background process and wait until it answers.",
    )
    add_serve_options(start)
    start.add_argument(
        "--timeout",
        type=float,
        default=START_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for it to answer (default {START_TIMEOUT:g})",
    )
    start.set_defaults(handler=run_start)
    stop = subparsers.add_parser("stop", help="stop the running daemon")
    stop.add_argument(
        "--timeout",
        type=float,
        default=STOP_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for it to exit (default {STOP_TIMEOUT:g})",
    )
    stop.set_defaults(handler=run_stop)
    status = subparsers.add_parser(
        "status", help="show the running daemon's state (exit code 1 if none runs)"
    )
    status.set_defaults(handler=run_status)


def _log_path() -> Path:
    try:
        return runtime_dir() / LOG_FILE_NAME
    except ConnectionFileError as error:
        raise DaemonError(str(error)) from None


def _rotate(path: Path) -> None:
    """Keep one previous log: a daemon restarted every day must not grow its log forever."""
    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def _configure_logging(verbose: bool, log_file: Path | None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        _rotate(log_file)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        handlers=handlers,
        force=True,
        format="%(asctime)s daemon[%(process)d] %(levelname)s %(name)s: %(message)s",
    )


def run_serve(args: argparse.Namespace) -> int:
    from .server.faults import Faults, faults_from_env
    from .server.lifecycle import refuse_live_daemon, serve

    limits = limits_for(args.max_side)  # option errors before any file is touched
    check_listen(args)
    try:
        faults = faults_from_env()
    except ValueError as error:
        raise DaemonError(str(error)) from None
    try:
        # Before the log is rotated: a refused second daemon must leave the first's log alone.
        refuse_live_daemon(default_connection_file())
    except ConnectionFileError as error:
        raise DaemonError(str(error)) from None
    log_file = None if args.no_log_file else (args.log_file or _log_path())
    _configure_logging(args.verbose, log_file)
    if faults != Faults():
        logging.getLogger(__name__).warning("injecting faults, for tests: %s", faults)
    level = logging.DEBUG if args.verbose else logging.INFO
    try:
        serve(serve_options(args, limits, faults, log_file, level))
    except ConnectionFileError as error:
        raise DaemonError(str(error)) from None
    return 0


def run_start(args: argparse.Namespace) -> int:
    limits_for(args.max_side)
    check_listen(args)
    try:
        with connect(timeout=2.0) as client:
            print(f"a daemon is already running (pid {client.info.pid}) on {client.info.endpoint}")
            return 0
    except DaemonUnavailable:
        pass
    log_path = _log_path()
    _rotate(log_path)
    command = [
        sys.executable,
        "-m",
        "neural_style_daemon.cli",
        *(["-v"] if args.verbose else []),
        "serve",
        "--no-log-file",
        *serve_argv(args),
    ]
    with open(log_path, "ab") as log_file:
        # Its own session: the daemon outlives this command and the terminal it ran in.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    info = _wait_until_ready(process, args.timeout, log_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del process  # detached on purpose: it keeps running after this command exits
    print(f"started the daemon (pid {info.pid}) on {info.endpoint}; log: {log_path}")
    return 0


def _wait_until_ready(process: subprocess.Popen, timeout: float, log_path: Path) -> ConnectionInfo:
    """Poll until the daemon we started has written its file and answers a ping."""
    path = default_connection_file()
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise DaemonError(
                f"the daemon exited with code {code} while starting; see "
                f"{log_path}:\n{_tail(log_path)}"
            )
        try:
            info = read_connection_file(path)
            if info.pid == process.pid:
                with DaemonClient(info) as client:
                    client.ping(0.5)
                return info
        except (ConnectionFileError, ClientError):
            pass  # not written yet, or not answering yet
        if time.monotonic() >= deadline:
            process.terminate()
            raise DaemonError(
                f"the daemon did not answer within {timeout:g} s (stopped it); see {log_path}"
            )
        time.sleep(0.1)  # a file written by another process: nothing to wait on but time


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def run_stop(args: argparse.Namespace) -> int:
    try:
        client = connect(timeout=2.0)
    except DaemonUnavailable as error:
        print(f"neural-style: nothing to stop: {error}", file=sys.stderr)
        return 0
    pid = client.info.pid
    with client:
        try:
            client.shutdown()
        except ClientError as error:  # wedged: escalate as Jupyter does
            print(f"neural-style: {error}; sending SIGTERM to pid {pid}", file=sys.stderr)
            _terminate(pid)
    if not _wait_for_exit(pid, args.timeout):
        raise DaemonError(
            f"the daemon (pid {pid}) did not exit within {args.timeout:g} s; `kill {pid}` ends it"
        )
    print(f"stopped the daemon (pid {pid})")
    return 0


def _terminate(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_process_alive(pid) and not _is_zombie(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)  # another process's exit: polled
    return True


def _is_zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet (Linux; elsewhere False)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def run_status(args: argparse.Namespace) -> int:
    try:
        with connect(timeout=2.0) as client:
            reply = client.status()
            info = client.info
    except DaemonUnavailable as error:
        print(f"neural-style: {error}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ClientError as error:
        raise DaemonError(str(error)) from None
    print(format_status(info, reply))
    return 0


def format_status(info: ConnectionInfo, reply: StatusReply) -> str:
    lines = [
        f"daemon: neural-style {reply.version} (protocol {PROTOCOL_VERSION}), pid {info.pid}, "
        f"{info.endpoint}",
        f"device: {reply.device}; model {'loaded' if reply.model_loaded else 'not loaded'}",
        f"worker: {reply.worker_state.value}",
        f"queue: {reply.queue_length} waiting (limit {reply.queue_limit})",
    ]
    if reply.memory_bytes is not None:
        lines.insert(2, f"memory: {reply.memory_bytes / 2**20:.0f} MiB in use by the worker")
    lines.append(f"running: {describe_progress(reply.running)}")
    return "\n".join(lines)


def describe_progress(progress: Progress | None) -> str:
    if progress is None:
        return "nothing"
    eta = "" if progress.eta is None else f", about {progress.eta:.0f} s left"
    return (
        f"job {progress.job_id}, scale {progress.scale}/{progress.scales}, step "
        f"{progress.iteration}/{progress.iterations}, {100 * progress.work_done:.0f}% "
        f"done{eta}"
    )
