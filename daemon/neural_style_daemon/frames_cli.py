"""`neural-style stylize-frames`: the frames of an animation, stylised as a sequence without
flicker (engine/frames.py), each written to the output folder as soon as it is done: on the
running daemon as one job (remote.py), or in this process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .console import EXIT_INTERRUPTED, CancelOnInterrupt, ProgressBar
from .engine.params import StyleParams
from .errors import InvalidInputError
from .job_options import add_job_options, add_style_weights, params_from_args


def add_frames_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize-frames",
        help="stylise the frames of an animation without flicker (on the running daemon, if "
        "there is one)",
        description="Stylise FRAME... (in order, all one size, at least two) with one or more "
        "--style images, each frame after the first starting from the one before, warped "
        "along the optical flow, and held there by a temporal loss (Ruder et al. 2016), so "
        "the strokes move with the picture instead of flickering. Writes DIR/<frame name>.png "
        "for each frame as soon as it is done; Ctrl-C keeps the frames done. A running daemon "
        "(`neural-style start`) does the work as one job, unless --local is given or an "
        "option only this process honours is used.",
    )
    p.add_argument("frames", type=Path, nargs="+", metavar="FRAME", help="the frames, in order")
    p.add_argument(
        "--style",
        type=Path,
        action="append",
        required=True,
        dest="styles",
        metavar="STYLE",
        help="a style image; give it again for several",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder for the frames (made if missing), each as <frame name>.png",
    )
    p.add_argument(
        "--temporal-weight",
        type=float,
        metavar="W",
        help="how strongly each frame holds to the one before (default "
        f"{StyleParams().temporal_weight:g}; 0: frames only start from the one before)",
    )
    add_style_weights(p)
    p.add_argument(
        "--local", action="store_true", help="run in this process even if a daemon is running"
    )
    add_job_options(
        p, init_help="where the first frame starts (default content)", init_metavar="content|noise"
    )
    p.set_defaults(handler=run_frames)


def output_paths(frames: list[Path], out_dir: Path) -> list[Path]:
    """DIR/<frame stem>.png for each frame; two frames of one name are an error."""
    paths = [out_dir / f"{frame.stem}.png" for frame in frames]
    seen: dict[Path, Path] = {}
    for frame, path in zip(frames, paths, strict=True):
        if path in seen:
            raise InvalidInputError(
                f"frames {seen[path]} and {frame} would both be written to {path}"
            )
        seen[path] = frame
    return paths


def run_frames(args: argparse.Namespace) -> int:
    if args.init not in ("content", "noise"):
        raise InvalidInputError(f"--init must be content or noise for frames, not {args.init!r}")
    params = params_from_args(args)  # bad options fail before anything slow happens
    if len(args.frames) < 2:
        raise InvalidInputError(
            f"a sequence needs at least 2 frames, got {len(args.frames)}: stylise a single "
            "image with `neural-style stylize`"
        )
    paths = output_paths(args.frames, args.out_dir)
    if not args.out_dir.parent.is_dir():
        raise InvalidInputError(f"output folder's parent does not exist: {args.out_dir.parent}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise InvalidInputError(f"output folder is a file: {args.out_dir}")
    if not args.local:
        from .remote import daemon_for, stylize_frames_with_daemon

        client = daemon_for(args)
        if client is not None:
            with client:
                return stylize_frames_with_daemon(args, client, paths)
    return _run_frames_here(args, params, paths)


def _run_frames_here(args: argparse.Namespace, params: StyleParams, paths: list[Path]) -> int:
    # Loads torch (seconds): after the options are known to be good.
    from .engine.frames import check_frames, stylize_frames
    from .engine.stylize import StyleEngine
    from .imageio import load_image, save_image

    frames = [load_image(path, f"frame {i}") for i, path in enumerate(args.frames, 1)]
    check_frames(frames)
    styles = [load_image(path, f"style image {i}") for i, path in enumerate(args.styles, 1)]
    args.out_dir.mkdir(exist_ok=True)
    engine = StyleEngine(args.weights, args.device)

    def write(index: int, image) -> None:
        save_image(image, paths[index])  # a temporary file, then a rename: never half written

    with ProgressBar(disabled=args.quiet) as bar, CancelOnInterrupt() as interrupt:
        result = stylize_frames(
            engine,
            frames,
            styles,
            params,
            on_progress=bar.update,
            should_cancel=interrupt.requested,
            on_frame=write,
        )
    done = len(result.images)
    if result.cancelled:
        print(
            f"interrupted: wrote {done} of {len(frames)} frames to {args.out_dir}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(
            f"wrote {done} frames to {args.out_dir} ({sum(result.steps)} steps, "
            f"{result.elapsed:.1f} s)",
            file=sys.stderr,
        )
    return 0
