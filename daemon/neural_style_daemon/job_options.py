"""The options of a stylisation job, shared by the commands that run one (`stylize`,
`stylize-frames`): each derives its default from StyleParams, the single source of truth,
and `params_from_args` turns them back into StyleParams. Imports no torch."""

from __future__ import annotations

import argparse
from dataclasses import fields

from .console import add_model_options
from .engine.params import (
    PRESETS,
    STYLE_LAYER_SETS,
    ColorMode,
    Init,
    Optimizer,
    StyleParams,
    resolve_style_layers,
)


def float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def layer_list(text: str) -> tuple[str, ...]:
    return resolve_style_layers(text)


def add_style_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--style-weights",
        type=float_list,
        dest="style_blend",
        metavar="W,W,...",
        help="blend weights, one per style image (default: equal)",
    )


def add_job_options(
    p: argparse.ArgumentParser, *, init_help: str, init_metavar: str = "content|noise|PATH"
) -> None:
    """Strength, size, preset and the rest of a job's options, the model's, and --quiet."""
    d = StyleParams()  # the defaults the help text shows
    p.add_argument(
        "--strength", type=float, help=f"style strength, 0..100 (default {d.strength:g})"
    )
    p.add_argument(
        "--size",
        type=int,
        help="processing size, long side in pixels (default: the content's own; the "
        "output always has the content's size)",
    )
    p.add_argument("--preset", choices=list(PRESETS), help=f"quality (default {d.preset})")
    p.add_argument("--iterations", type=int, help="iterations per scale (default: the preset's)")
    p.add_argument(
        "--initial-iterations",
        type=int,
        help="iterations at the coarsest scale (default: the preset's)",
    )
    p.add_argument("--min-size", type=int, help="coarsest pyramid scale (default: the preset's)")
    p.add_argument(
        "--tolerance",
        type=float,
        help="end a scale once its look (its distances to the content and the style) "
        "changes by less than this fraction over ten steps; 0 runs every iteration (default: "
        "the preset's)",
    )
    p.add_argument(
        "--optimizer",
        choices=[o.value for o in Optimizer],
        help=f"(default {d.optimizer.value})",
    )
    p.add_argument(
        "--learning-rate", type=float, help=f"Adam's step size (default {d.learning_rate})"
    )
    p.add_argument(
        "--lbfgs-history",
        type=int,
        metavar="STEPS",
        help="steps L-BFGS remembers; fewer need less memory (each takes two "
        f"image-sized vectors) and converge a little slower "
        f"(default {d.lbfgs_history})",
    )
    p.add_argument(
        "--tile-size",
        type=int,
        metavar="PX",
        help="evaluate scales with a longer side in tiles of about PX pixels: the same "
        "result in memory bounded by the tile (default: only where the job does not fit "
        "whole)",
    )
    p.add_argument(
        "--max-memory",
        type=float,
        metavar="GIB",
        help="memory the job may use, in GiB, as if no more were free: it runs in tiles (or "
        "with a shorter L-BFGS history) where it needs more whole (default: what is free)",
    )
    p.add_argument(
        "--preserve-colors",
        choices=[c.value for c in ColorMode],
        help=f"keep the content's colours (default {d.preserve_colors.value})",
    )
    p.add_argument(
        "--init",
        default="content",
        metavar=init_metavar,
        help=init_help,
    )
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--style-scale",
        type=float,
        help=f"style size relative to the output (default {d.style_scale})",
    )
    p.add_argument(
        "--style-upscale",
        action="store_true",
        default=None,
        help="allow enlarging style images beyond their own size",
    )
    expert = p.add_argument_group("expert weights (override --strength)")
    expert.add_argument("--content-weight", type=float, help=f"(default {d.content_weight})")
    expert.add_argument("--style-weight", type=float, help="(default: from --strength)")
    expert.add_argument("--tv-weight", type=float, help=f"(default {d.tv_weight})")
    expert.add_argument(
        "--content-layers", type=layer_list, help=f"(default {','.join(d.content_layers)})"
    )
    expert.add_argument(
        "--style-layers",
        type=layer_list,
        help=f"a set ({', '.join(STYLE_LAYER_SETS)}) or names (default: default)",
    )
    expert.add_argument(
        "--style-layer-weights",
        type=float_list,
        metavar="W,W,...",
        help="one per style layer (default: equal)",
    )
    add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def params_from_args(args: argparse.Namespace) -> StyleParams:
    """The job's StyleParams: the defaults, with the options given."""
    names = {f.name for f in fields(StyleParams)}
    overrides = {k: v for k, v in vars(args).items() if k in names and k != "init"}
    if args.init in ("content", "noise"):
        overrides["init"] = args.init
    else:
        overrides["init"] = Init.IMAGE
    return StyleParams().with_overrides(**overrides)
