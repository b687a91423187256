"""The options of `neural-style bench` and running it from parsed arguments. The `neural-style`
command line adds these options to its `bench` sub-command; domain errors propagate to it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..engine.devices import resolve_device
from ..engine.params import MAX_SIZE, MIN_SIDE, PRESETS, StyleParams
from ..engine.stylize import PRECISIONS
from ..errors import InvalidInputError
from ..serve_options import at_least
from .inputs import DEFAULT_CONTENT, DEFAULT_STYLE, SHARED_IMAGES, load_bench_images
from .quality_command import add_quality_arguments, refuse_misplaced, run_quality_from_args
from .run import BenchConfig, format_json, format_table, run_benchmark

log = logging.getLogger(__name__)

# Defaults by device kind: the tutorial's sizes and iteration count on a GPU; on a CPU, where
# one VGG iteration at 512 px takes seconds, fewer, so that the default run takes minutes.
DEFAULT_SIZES = {"cuda": (256, 512, 1024), "other": (256,)}
DEFAULT_NAIVE_ITERATIONS = {"cuda": 300, "other": 100}


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 256,512, got {text!r}") from None
    if not sizes or any(not MIN_SIDE <= s <= MAX_SIZE for s in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be {MIN_SIDE} to {MAX_SIZE} pixels")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench options to `parser` (the `bench` sub-command's parser)."""
    add_comparison_arguments(parser)
    add_quality_arguments(parser)


def add_comparison_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the comparison with the naive, without the quality suite's (the GPU
    suite, gpu_suite/, adds its own to these)."""
    cuda, other = DEFAULT_NAIVE_ITERATIONS["cuda"], DEFAULT_NAIVE_ITERATIONS["other"]
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--sizes",
        type=_sizes,
        metavar="N,N,...",
        help="output sizes, long side in pixels (default: 256,512,1024 on CUDA; 256 on a CPU or "
        "MPS, where it finishes in a few minutes; add 512 for a fuller picture)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON, one object per size")
    parser.add_argument(
        "--naive-arch",
        choices=("vgg19", "vgg16"),
        default="vgg19",
        help="the naive's network: vgg19 as in the tutorial (default); vgg16, the engine's, "
        "isolates what the implementation gains from what the smaller network gains",
    )
    parser.add_argument(
        "--naive-iterations",
        type=at_least(int, 1),
        metavar="N",
        help=f"the naive's L-BFGS iterations (default: {cuda} on CUDA, {other} elsewhere)",
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|random|PATH",
        help="VGG weights for both arms (default imagenet; random: seeded, for machines "
        "without the checkpoints; PATH: a VGG16 checkpoint, with --naive-arch vgg16)",
    )
    parser.add_argument(
        "--content",
        type=Path,
        metavar="PATH",
        help=f"content image (default: {SHARED_IMAGES / DEFAULT_CONTENT} "
        "if present, else a synthetic one)",
    )
    parser.add_argument(
        "--style",
        type=Path,
        metavar="PATH",
        help=f"style image (default: {SHARED_IMAGES / DEFAULT_STYLE} "
        "if present, else a synthetic one)",
    )
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help=f"the engine's preset (default {StyleParams().preset})",
    )
    parser.add_argument(
        "--full-engine-run",
        action="store_true",
        help="run the engine's whole preset instead of stopping it once it "
        "reaches the naive's loss",
    )
    parser.add_argument(
        "--naive-tf32",
        action="store_true",
        help="let the naive use TF32 on CUDA, as PyTorch's defaults do in "
        "convolutions (default: plain fp32, the published baseline)",
    )
    parser.add_argument(
        "--engine-precision",
        choices=PRECISIONS,
        default="auto",
        help="the engine's numerics: auto (bf16 autocast on CUDA, as shipped) "
        "or fp32 (to measure what bf16 costs in convergence)",
    )
    parser.add_argument(
        "--no-cuda-graphs",
        dest="engine_cuda_graphs",
        action="store_false",
        help="run each of the engine's steps eagerly on CUDA instead of "
        "replaying a captured graph (to measure what the graphs save)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weights and images (default 0)")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The benchmark configuration, device defaults filled in; bad combinations refused."""
    device = resolve_device(args.device)
    kind = "cuda" if device.type == "cuda" else "other"
    if args.weights not in ("imagenet", "random") and args.naive_arch != "vgg16":
        raise InvalidInputError(
            "a weights file holds one network: use --naive-arch vgg16 with --weights PATH"
        )
    return BenchConfig(
        device=device,
        sizes=args.sizes or DEFAULT_SIZES[kind],
        naive_iterations=args.naive_iterations or DEFAULT_NAIVE_ITERATIONS[kind],
        naive_arch=args.naive_arch,
        weights=args.weights,
        seed=args.seed,
        preset=args.preset or StyleParams().preset,
        stop_at_target=not args.full_engine_run,
        naive_tf32=args.naive_tf32,
        engine_precision=args.engine_precision,
        engine_cuda_graphs=args.engine_cuda_graphs,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark (or the quality suite) and print the table (or JSON); returns the
    exit status (0)."""
    refuse_misplaced(args)
    if args.suite == "quality":
        return run_quality_from_args(args)
    config = config_from_args(args)
    images = load_bench_images(args.content, args.style, seed=args.seed)
    log.info("content %s, style %s", images.content_source, images.style_source)
    rows = run_benchmark(config, images)
    print(format_json(rows) if args.json else format_table(rows, config))
    return 0
