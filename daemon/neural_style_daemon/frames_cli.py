"""`neural-style stylize-frames`: the frames of an animation, stylised as a sequence without
flicker (engine/frames.py), each written to the output folder as soon as it is done. In this
process only, for now: the daemon does not take sequences yet."""

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
        help="stylise the frames of an animation without flicker (in this process)",
        description="Stylise FRAME... (in order, all one size, at least two) with one or more "
        "--style images, each frame after the first starting from the one before, warped "
        "along the optical flow, and held there by a temporal loss (Ruder et al. 2016), so "
        "the strokes move with the picture instead of flickering. Writes DIR/<frame name>.png "
        "for each frame as soon as it is done; Ctrl-C keeps the frames done. Runs in this "
        "process, never on the daemon.",
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
    paths = output_paths(args.frames, args.out_dir)
    if not args.out_dir.parent.is_dir():
        raise InvalidInputError(f"output folder's parent does not exist: {args.out_dir.parent}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise InvalidInputError(f"output folder is a file: {args.out_dir}")
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
