"""`python -m gpu_suite`: parse, log to stderr, run; a domain error is one line and exit 2, as
in `neural-style`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from neural_style_daemon.console import EXIT_INTERRUPTED, EXIT_USAGE
from neural_style_daemon.errors import StyleTransferError

from .command import build_parser, run_suite_from_args


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="gpu_suite: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run_suite_from_args(args)
    except StyleTransferError as exc:
        print(f"gpu_suite: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("gpu_suite: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
