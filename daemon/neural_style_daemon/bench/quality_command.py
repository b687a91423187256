"""The options of `neural-style bench --suite quality`, and running it: a line per run as it
ends, then the Markdown table (or the JSON); with --out, quality.md, quality.json and
contact-sheet.png there."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path

from ..engine import StyleParams
from ..engine.params import PRESETS
from ..engine.stylize import StyleEngine
from ..errors import InvalidInputError
from ..serve_options import at_least
from .environment import environment
from .quality import QualityConfig, QualityRun, pairs_from_args, run_quality
from .quality_report import format_table, to_json, write_outputs

log = logging.getLogger(__name__)

# Options that mean something only with --suite quality (those without a default value).
QUALITY_ONLY = ("out", "pair", "all_pairs", "presets", "reference_factor", "strengths")
DEFAULT_SIZES = (256,)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset(s) {', '.join(unknown) or text!r} (choose from {', '.join(PRESETS)})"
        )
    return names


def _strengths(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected strengths like 30,50,70, got {text!r}"
        ) from None
    if not values or any(not 0 <= value <= 100 for value in values):
        raise argparse.ArgumentTypeError("strengths are 0 to 100")
    return values


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "quality suite",
        "--suite quality: each preset against a long reference run, judged by how the "
        "result looks (distances to the style's Gram statistics and the content's features, "
        "the colour layout), on the sample pairs or the pairs given; --sizes are the "
        "processing sizes (default 256). Use trained weights (--weights PATH).",
    )
    group.add_argument(
        "--suite",
        choices=("quality",),
        help="quality: how each preset's result looks (see the quality suite's options)",
    )
    group.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write quality.md, quality.json and contact-sheet.png here",
    )
    group.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("CONTENT", "STYLE"),
        help="a content and a style image (repeat for more; default: four sample pairs from "
        "../shared/images, each photo and each painting once)",
    )
    group.add_argument(
        "--all-pairs",
        action="store_true",
        default=None,
        help="every sample photo with every sample painting (sixteen pairs)",
    )
    group.add_argument(
        "--presets",
        type=_names,
        metavar="A,B,...",
        help=f"the presets to judge (default all: {', '.join(PRESETS)})",
    )
    group.add_argument(
        "--reference-factor",
        type=at_least(float, 1),
        metavar="F",
        help="the reference runs best with F times its iterations, without early stop (default 3)",
    )
    group.add_argument(
        "--strengths",
        type=_strengths,
        metavar="S,S,...",
        help="also run the normal preset at each of these strengths (0 to 100)",
    )


def refuse_misplaced(args: argparse.Namespace) -> None:
    """Quality options without --suite quality are a mistake worth saying."""
    given = [f"--{name.replace('_', '-')}" for name in QUALITY_ONLY if _given(args, name)]
    if given and args.suite != "quality":
        raise InvalidInputError(f"{', '.join(given)}: only with --suite quality")


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name)
    return value is not None and value is not False


def quality_config(args: argparse.Namespace) -> QualityConfig:
    base = StyleParams(seed=args.seed)
    return QualityConfig(
        pairs=tuple(pairs_from_args(args.pair, bool(args.all_pairs))),
        sizes=args.sizes or DEFAULT_SIZES,
        presets=args.presets or tuple(PRESETS),
        reference_factor=args.reference_factor or 3.0,
        strengths=args.strengths or (),
        params=base,
    )


def run_quality_from_args(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("skimage") is None:
        raise InvalidInputError(
            "the quality suite measures colour with scikit-image, which is not installed: "
            "pip install 'neural-style-gimp[bench]' (or scikit-image)"
        )
    config = quality_config(args)
    if args.weights == "random":
        log.warning("random weights: the looks measured mean nothing (use --weights PATH)")
    engine = StyleEngine(args.weights, args.device, seed=args.seed)
    meta = environment(engine.device, sys.argv)
    meta["weights"] = args.weights

    def on_run(run: QualityRun) -> None:
        if not args.json:
            gap = "" if run.gap is None else f", gap {100 * run.gap:.1f} %"
            print(
                f"{run.pair} at {run.size} px, {run.label}: {run.seconds:.1f} s, {run.steps} "
                f"steps, style {run.look.style:.4f}, content {run.look.content:.4f}{gap}",
                file=sys.stderr,
                flush=True,
            )

    results = run_quality(config, engine, on_run)
    if args.out is not None:
        for path in write_outputs(args.out, results, meta):
            print(f"wrote {path}", file=sys.stderr)
    print(to_json(results, meta) if args.json else format_table(results))
    return 0
