"""The `neural-style` command: stylize, stylize-frames (in frames_cli.py), fetch-weights,
bench, install-gimp-plugin (in gimp_install.py), and the daemon's serve, start, stop and status
(in daemon_cli.py).

The only place that turns domain errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from . import __version__
from .console import EXIT_INTERRUPTED, EXIT_USAGE, CancelOnInterrupt, ProgressBar
from .daemon_cli import DAEMON_COMMANDS, add_daemon_commands
from .engine.params import Init
from .errors import InvalidInputError, StyleTransferError
from .frames_cli import add_frames_command
from .job_options import add_job_options, add_style_weights, params_from_args
from .region_masks import NO_MASK, join_mask_values, load_job_masks, mask_list

log = logging.getLogger("neural_style")


def _add_stylize(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize",
        help="stylise an image (on the running daemon, if there is one)",
        description="Stylise CONTENT with one or more STYLE images (Gatys et al. 2016). A "
        "running daemon (`neural-style start`) does the work with its warm model, "
        "unless --local is given or an option only this process honours is used.",
    )
    p.add_argument("content", type=Path, help="the image to stylise")
    p.add_argument("styles", type=Path, nargs="+", metavar="STYLE", help="style image(s)")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="output file; the format follows the extension (png, jpg, tif, webp)",
    )
    add_style_weights(p)
    _add_mask_options(p)
    add_job_options(p, init_help="start from the content (default), noise, or an image file")
    p.add_argument(
        "--save-every",
        metavar="N",
        help="also write the image so far every N steps (counted over all the scales), to "
        "the output's name with the step: -o out.png writes out-N.png, out-2N.png, ... "
        "(runs in this process)",
    )
    p.add_argument(
        "--local", action="store_true", help="run in this process even if a daemon is running"
    )
    p.set_defaults(handler=_run_stylize)


def _add_mask_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--style-masks",
        type=mask_list,
        metavar="M,M,...",
        help="where each style image goes (Gatys et al. 2017): exactly one file per style "
        f"image, in order, {NO_MASK} for a style that goes everywhere; each the content's size, "
        "white where its style goes, black where not, grey for a soft edge. A mask with "
        "transparency is read by its alpha (painted: in), whatever its colour",
    )
    p.add_argument(
        "--style-source-masks",
        type=mask_list,
        metavar="M,M,...",
        help="the part of each style image to learn from: exactly one file per style image, in "
        f"order, {NO_MASK} for all of it; each that style image's size, read as --style-masks",
    )


def _run_stylize(args: argparse.Namespace) -> int:
    if not args.local:
        from .remote import daemon_for, stylize_with_daemon

        client = daemon_for(args)
        if client is not None:
            with client:
                return stylize_with_daemon(args, client)
    return _run_stylize_here(args)


def _run_stylize_here(args: argparse.Namespace) -> int:
    # The only path of `stylize` that loads torch (seconds): a job on the daemon never does.
    from .engine.stylize import StyleEngine
    from .imageio import load_image, output_format, save_image
    from .snapshots import snapshot_interval, write_snapshot

    # Bad options fail before anything slow happens.
    params = replace(params_from_args(args), snapshot_every=snapshot_interval(args.save_every))
    output_format(args.output)
    if not args.output.parent.is_dir():
        raise InvalidInputError(f"output folder does not exist: {args.output.parent}")
    content = load_image(args.content, "content image")
    styles = [load_image(path, f"style image {i}") for i, path in enumerate(args.styles, 1)]
    masks = load_job_masks(
        args,
        (content.shape[1], content.shape[0]),
        lambda index: (styles[index].shape[1], styles[index].shape[0]),
    )
    init_image = load_image(Path(args.init), "init image") if params.init is Init.IMAGE else None
    engine = StyleEngine(args.weights, args.device)
    with ProgressBar(disabled=args.quiet) as bar, CancelOnInterrupt() as interrupt:
        result = engine.stylize(
            content,
            styles,
            params,
            style_masks=masks.regions,
            style_source_masks=masks.sources,
            init_image=init_image,
            on_progress=bar.update,
            should_cancel=interrupt.requested,
            on_snapshot=partial(write_snapshot, args.output),
        )
    save_image(result.image, args.output)
    if result.cancelled:
        print(
            f"interrupted: saved the image after {result.steps} steps to {args.output}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(
            f"wrote {args.output} ({result.steps} steps, {result.elapsed:.1f} s)", file=sys.stderr
        )
    return 0


def _add_fetch_weights(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fetch-weights",
        help="download and verify the VGG16 ImageNet weights ahead of time",
        description="Download torchvision's VGG16 ImageNet checkpoint into torch's hub cache "
        "and check its hash, so later runs work offline.",
    )
    p.set_defaults(handler=_run_fetch_weights)


def _run_fetch_weights(args: argparse.Namespace) -> int:
    from .engine.weights import IMAGENET_URLS, fetch_checkpoint

    path = fetch_checkpoint(IMAGENET_URLS["vgg16"], progress=True)
    print(f"VGG16 ImageNet weights verified: {path}")
    return 0


def _add_bench(subparsers: argparse._SubParsersAction, with_options: bool) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time this engine against a naive reference implementation",
        description="Per-iteration time, time to the naive reference's final loss, speedup and "
        "peak memory, for this engine and a PyTorch-tutorial-style implementation.",
    )
    if with_options:
        from .bench import add_arguments  # its option checks import torch

        add_arguments(p)
    p.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from .bench import run_from_args

    return run_from_args(args)


def _command(argv: Sequence[str]) -> str | None:
    """The command: the first word that is not an option."""
    return next((word for word in argv if not word.startswith("-")), None)


def _is_daemon_command(argv: Sequence[str]) -> bool:
    return _command(argv) in DAEMON_COMMANDS


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser `main` uses for `argv`: only what its command needs is imported."""
    return build_parser(
        daemon_only=_is_daemon_command(argv), bench_options=_command(argv) == "bench"
    )


def build_parser(daemon_only: bool = False, bench_options: bool = True) -> argparse.ArgumentParser:
    """The full parser, or a lighter one where the command is known: `daemon_only`, the
    daemon's commands alone (what the broker process and `status` parse, without importing
    the plug-in's installer or the bench); without `bench_options`, `bench` is listed but has
    no options, which import torch. No other command imports torch to parse, so that a job
    for a warm daemon starts at once."""
    parser = argparse.ArgumentParser(
        prog="neural-style",
        description="Neural style transfer (Gatys et al.) for GIMP 3.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if not daemon_only:
        _add_stylize(subparsers)
        add_frames_command(subparsers)
        _add_fetch_weights(subparsers)
        _add_bench(subparsers, with_options=bench_options)
        from .gimp_install import add_install_command

        add_install_command(subparsers)
    add_daemon_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = join_mask_values(sys.argv[1:] if argv is None else argv)
    args = parser_for(argv).parse_args(argv)
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="neural-style: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except StyleTransferError as exc:
        print(f"neural-style: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("neural-style: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
