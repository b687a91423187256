"""The options of `serve` and `start`, defined once: parsed, turned into the server's
ServeOptions, and written back as command-line words for the background process that `start`
runs. Imports no torch (the server modules it names are the broker's)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from neural_style_protocol.limits import DEFAULT_LIMITS, Limits
from neural_style_protocol.transport import DEFAULT_ENDPOINT, EndpointError, check_endpoint

from .console import add_model_options
from .errors import DaemonError

if TYPE_CHECKING:
    from .server.faults import Faults
    from .server.lifecycle import ServeOptions


def positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
        return value

    return parse


def at_least(kind: type, low: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not value >= low:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"expected a number of at least {low:g}, got {text}")
        return value

    return parse


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint",
        default=DEFAULT_ENDPOINT,
        help="where to listen: tcp://127.0.0.1:PORT (default: a free port) or "
        "ipc://PATH; another address (tcp://0.0.0.0:PORT) only with "
        "--curve-keys",
    )
    parser.add_argument(
        "--curve-keys",
        type=Path,
        metavar="DIR",
        help="authenticate clients with CURVE and encrypt: the daemon's key "
        "pair in DIR (made on first use), allowed clients' public keys "
        "in DIR/clients/*.key; needed to listen beyond loopback",
    )
    add_model_options(parser)
    parser.add_argument(
        "--queue-length",
        type=positive(int),
        default=8,
        metavar="N",
        help="jobs that may wait behind the running one (default 8)",
    )
    parser.add_argument(
        "--exit-after-idle",
        type=positive(float),
        metavar="MINUTES",
        help="exit after this many minutes without jobs (default: never)",
    )
    parser.add_argument(
        "--client-timeout",
        type=positive(float),
        default=10.0,
        metavar="SECONDS",
        help="cancel a job whose client has been silent this long (default 10)",
    )
    parser.add_argument(
        "--keep-results",
        type=positive(float),
        default=300.0,
        metavar="SECONDS",
        help="keep finished results this long for resubmits (default 300)",
    )
    parser.add_argument(
        "--max-side",
        type=positive(int),
        metavar="PIXELS",
        help=f"largest image side accepted (default {DEFAULT_LIMITS.max_side})",
    )
    _add_worker_options(parser)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unload-after-idle",
        type=at_least(float, 0),
        default=30.0,
        metavar="MINUTES",
        help="stop the worker after this many minutes without jobs, to free "
        "(GPU) memory; the next job loads the model again (default 30; 0: "
        "never)",
    )
    parser.add_argument(
        "--job-timeout",
        type=at_least(float, 0),
        default=1800.0,
        metavar="SECONDS",
        help="stop a job that runs longer than this, as timed_out (default 1800; 0: no limit)",
    )
    parser.add_argument(
        "--cancel-grace",
        type=positive(float),
        default=30.0,
        metavar="SECONDS",
        help="restart the worker when a cancelled job has not stopped within this (default 30)",
    )
    parser.add_argument(
        "--oom-min-size",
        type=at_least(int, 32),
        default=256,
        metavar="PIXELS",
        help="out of memory, a job is retried at smaller sizes down to this "
        "long side (default 256)",
    )
    parser.add_argument(
        "--max-memory",
        type=positive(float),
        metavar="GIB",
        help="memory each job may use, in GiB, as if no more were free: larger jobs run in "
        "tiles (default: what the device has free)",
    )


def serve_argv(args: argparse.Namespace) -> list[str]:
    """`args`' serve options as command-line words, for the background process."""
    argv = [
        "--endpoint",
        args.endpoint,
        "--device",
        args.device,
        "--weights",
        args.weights,
        "--queue-length",
        str(args.queue_length),
        "--client-timeout",
        str(args.client_timeout),
        "--keep-results",
        str(args.keep_results),
        "--unload-after-idle",
        str(args.unload_after_idle),
        "--job-timeout",
        str(args.job_timeout),
        "--cancel-grace",
        str(args.cancel_grace),
        "--oom-min-size",
        str(args.oom_min_size),
    ]
    if args.exit_after_idle is not None:
        argv += ["--exit-after-idle", str(args.exit_after_idle)]
    if args.max_side is not None:
        argv += ["--max-side", str(args.max_side)]
    if args.max_memory is not None:
        argv += ["--max-memory", str(args.max_memory)]
    if args.curve_keys is not None:
        argv += ["--curve-keys", str(args.curve_keys.resolve())]
    return argv


def check_listen(args: argparse.Namespace) -> None:
    """DaemonError (exit code 2) for an endpoint these options may not listen on: anything
    but loopback needs --curve-keys. Checked before any file is touched."""
    try:
        check_endpoint(args.endpoint, curve=args.curve_keys is not None)
    except EndpointError as error:
        raise DaemonError(str(error)) from None


def limits_for(max_side: int | None) -> Limits:
    if max_side is None:
        return DEFAULT_LIMITS
    if max_side > DEFAULT_LIMITS.max_side:
        # Clients check replies against the default limits: a bigger result would be refused.
        raise DaemonError(
            f"--max-side can lower the limit of {DEFAULT_LIMITS.max_side} pixels, not raise it"
        )
    return Limits(
        max_side=max_side, max_pixels=max_side * max_side, max_frame_bytes=max_side * max_side * 4
    )


def serve_options(
    args: argparse.Namespace, limits: Limits, faults: Faults, log_file: Path | None, log_level: int
) -> ServeOptions:
    """The server's options from the parsed command line (minutes become seconds; 0 turns a
    timer off)."""
    from .server.events import WorkerConfig
    from .server.lifecycle import ServeOptions
    from .server.scheduler import SchedulerConfig

    return ServeOptions(
        endpoint=args.endpoint,
        worker=WorkerConfig(
            args.weights,
            args.device,
            log_level,
            None if log_file is None else str(log_file),
            oom_min_size=args.oom_min_size,
            max_memory_bytes=None if args.max_memory is None else round(args.max_memory * 2**30),
            faults=faults,
        ),
        scheduler=SchedulerConfig(
            queue_limit=args.queue_length,
            client_timeout=args.client_timeout,
            keep_seconds=args.keep_results,
            cancel_grace=args.cancel_grace,
            job_timeout=args.job_timeout or None,
            unload_after_idle=args.unload_after_idle * 60 or None,
        ),
        limits=limits,
        exit_after_idle=None if args.exit_after_idle is None else args.exit_after_idle * 60,
        curve_keys=args.curve_keys,
    )
