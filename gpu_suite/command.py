"""The GPU suite's options and running it (`python -m gpu_suite`): the header first, each
part's table as soon as the part ends (a run cut off at the device's time limit keeps what it
printed), then the issue's targets and the JSON. With --out, report.md and results.json are
rewritten there after every part; nothing else is written anywhere (the daemon's runtime folder
and the compile caches are temporary folders, removed)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from neural_style_daemon.bench.command import add_comparison_arguments, config_from_args
from neural_style_daemon.bench.environment import environment
from neural_style_daemon.bench.inputs import load_bench_images
from neural_style_daemon.bench.run import BenchConfig
from neural_style_daemon.engine.params import MAX_SIZE, MIN_SIDE
from neural_style_daemon.serve_options import at_least

from .config import SuiteConfig, SuiteResult
from .report import (
    format_e2e,
    format_engine_jobs,
    format_header,
    format_large,
    format_steps,
    format_targets,
    targets,
    to_json,
)
from .step import VARIANTS, WITH_CUDA_GRAPHS
from .step_timing import StepSettings
from .suite import run_suite

DEFAULT_BUDGET = 480.0  # seconds: the device machine's 10-minute call, with room to spare


@dataclass(frozen=True)
class _SuiteDefaults:
    sizes: tuple[int, ...]
    warmup: int
    iterations: int
    compile_mode: str
    e2e_size: int
    large_size: int
    naive_iterations: int
    job_iterations: int | None
    reserves: tuple[float, float, float]  # the end-to-end part, the large job, a compile


# By device kind: sizes and counts for a CUDA GPU, for a CPU (a few minutes), and --smoke
# (the tests': every part at tiny sizes). Reserves: seconds a part needs left to start.
SUITE_DEFAULTS: dict[str, _SuiteDefaults] = {
    "cuda": _SuiteDefaults(
        sizes=(512, 1024),
        warmup=5,
        iterations=20,
        compile_mode="max-autotune-no-cudagraphs",
        e2e_size=512,
        large_size=4096,
        naive_iterations=300,
        job_iterations=None,
        reserves=(60.0, 90.0, 120.0),
    ),
    "other": _SuiteDefaults(
        sizes=(256,),
        warmup=2,
        iterations=5,
        compile_mode="default",
        e2e_size=256,
        large_size=0,
        naive_iterations=100,
        job_iterations=None,
        reserves=(0.0, 0.0, 0.0),
    ),
    "smoke": _SuiteDefaults(
        sizes=(64,),
        warmup=1,
        iterations=2,
        compile_mode="default",
        e2e_size=64,
        large_size=0,
        naive_iterations=10,
        job_iterations=10,
        reserves=(0.0, 0.0, 0.0),
    ),
}


def _variants(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in VARIANTS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or text!r} (choose from {', '.join(VARIANTS)})"
        )
    return names


def _size_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in pixels, got {text!r}") from None
    if value != 0 and not MIN_SIDE <= value <= MAX_SIZE:
        raise argparse.ArgumentTypeError(f"sizes are {MIN_SIDE} to {MAX_SIZE} pixels, or 0")
    return value


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "GPU suite",
        "per-iteration times and TFLOP/s of every fast path with its gradient checked "
        "against fp32, a warm daemon's job against the naive, a large job, torch.compile's "
        "cost (docs/benchmarks.md). --sizes are the per-iteration sizes (default 512,1024 on "
        "CUDA, 256 elsewhere).",
    )
    group.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, two iterations and the draft preset: check on a CPU that every part runs",
    )
    group.add_argument(
        "--budget-seconds",
        type=at_least(float, 0),
        default=DEFAULT_BUDGET,
        metavar="S",
        help="skip what would start after this (default "
        "%(default)g; a running compile is not stopped)",
    )
    group.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write report.md and results.json here, after every part",
    )
    group.add_argument(
        "--variants",
        type=_variants,
        metavar="A,B,...",
        help=f"per-iteration variants (default all: {', '.join(VARIANTS)})",
    )
    group.add_argument(
        "--warmup",
        type=at_least(int, 0),
        metavar="N",
        help="untimed iterations per variant (default 5 on CUDA, 2 elsewhere, 1 with --smoke)",
    )
    group.add_argument(
        "--step-iterations",
        type=at_least(int, 1),
        metavar="N",
        help="timed iterations per variant (default 20 on CUDA, 5 elsewhere)",
    )
    group.add_argument(
        "--compile-mode",
        choices=tuple(WITH_CUDA_GRAPHS),
        help="torch.compile mode without CUDA graphs (default "
        "max-autotune-no-cudagraphs on CUDA, default elsewhere); the "
        "graphs variant uses the same with CUDA graphs",
    )
    group.add_argument(
        "--compile-backend",
        choices=("inductor", "aot_eager"),
        default="inductor",
        help="aot_eager: capture the step as torch.compile "
        "does without generating kernels (quick; for CPU smoke runs)",
    )
    group.add_argument(
        "--e2e-size",
        type=_size_or_zero,
        metavar="N",
        help="the daemon's job size against the naive (default 512 on CUDA, "
        "256 elsewhere, 64 with --smoke; 0: skip)",
    )
    group.add_argument(
        "--job-iterations",
        type=at_least(int, 1),
        metavar="N",
        help="the daemon jobs' iterations per scale (default: the preset's; 10 with --smoke)",
    )
    group.add_argument(
        "--large-size",
        type=_size_or_zero,
        metavar="N",
        help="the large job's size (default 4096 on CUDA, 0 = skipped elsewhere)",
    )


def suite_config(args: argparse.Namespace, bench: BenchConfig) -> SuiteConfig:
    """The suite's configuration: what the options say, the device kind's defaults else."""
    kind = "smoke" if args.smoke else ("cuda" if bench.device.type == "cuda" else "other")
    d = SUITE_DEFAULTS[kind]
    e2e_reserve, large_reserve, compile_reserve = d.reserves
    step = StepSettings(
        warmup=d.warmup if args.warmup is None else args.warmup,
        iterations=args.step_iterations or d.iterations,
        compile_mode=args.compile_mode or d.compile_mode,
        compile_backend=args.compile_backend,
    )

    return SuiteConfig(
        bench=bench,
        step_sizes=args.sizes or d.sizes,
        variants=args.variants or tuple(VARIANTS),
        step=step,
        e2e_size=d.e2e_size if args.e2e_size is None else args.e2e_size,
        large_size=d.large_size if args.large_size is None else args.large_size,
        budget_seconds=args.budget_seconds,
        job_iterations=(d.job_iterations if args.job_iterations is None else args.job_iterations)
        or None,
        e2e_reserve=e2e_reserve,
        large_reserve=large_reserve,
        compile_reserve=compile_reserve,
    )


def build_parser() -> argparse.ArgumentParser:
    """The comparison's options (those of `neural-style bench`) and the suite's."""
    parser = argparse.ArgumentParser(
        prog="python -m gpu_suite",
        description="The GPU measurement suite: every fast path of one iteration, the "
        "engine's speed-ups in whole jobs, a warm daemon against the naive, a large job.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    add_comparison_arguments(parser)
    add_suite_arguments(parser)
    return parser


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The comparison's configuration, with the suite's defaults where the options are
    silent: its naive iterations by device kind, and with --smoke the draft preset."""
    config = config_from_args(args)
    kind = "smoke" if args.smoke else ("cuda" if config.device.type == "cuda" else "other")
    return replace(
        config,
        naive_iterations=args.naive_iterations or SUITE_DEFAULTS[kind].naive_iterations,
        preset=args.preset or ("draft" if args.smoke else config.preset),
    )


def section(name: str, result: SuiteResult, config: SuiteConfig) -> str | None:
    """The table(s) of one part, or None for a part that was not asked for."""
    compiled = [r for r in result.step if VARIANTS[r.variant].compiled]
    if name == "step":
        rows = [r for r in result.step if not VARIANTS[r.variant].compiled]
        return format_steps("One iteration: eager and CUDA graph", rows, config) if rows else None
    if name == "compile":
        return (
            format_steps("One iteration under torch.compile", compiled, config)
            if compiled
            else None
        )
    if name == "engine" and result.engine_jobs:
        return format_engine_jobs(result, config)
    if name == "e2e" and config.e2e_size:
        return format_e2e(result, config)
    if name == "large" and config.large_size:
        return format_large(result, config)
    return None


def run_suite_from_args(args: argparse.Namespace) -> int:
    """Run the suite and print its report (or the JSON alone); returns the exit status (0)."""
    bench = bench_config(args)
    config = suite_config(args, bench)
    images = load_bench_images(args.content, args.style, seed=args.seed)
    meta = environment(bench.device, ["python3", "-m", "gpu_suite", *sys.argv[1:]])
    sources = f"content {images.content_source}, style {images.style_source}"
    sections = [format_header(meta, config, sources)]
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    if not args.json:
        print(sections[0], flush=True)

    def on_part(name: str, result: SuiteResult) -> None:
        text = section(name, result, config)
        if text is not None:
            sections.append(text)
            if not args.json:
                print("\n" + text, flush=True)
        _write(args.out, sections, meta, config, result)

    result = run_suite(config, images, on_part)
    notes = [f"- {note}" for note in result.notes]
    notes.append(
        f"- the suite took {result.seconds:.0f} s of its {config.budget_seconds:g} s budget"
    )
    sections.append(format_targets(targets(result)) + "\n\n" + "\n".join(notes))
    _write(args.out, sections, meta, config, result)
    blob = to_json(meta, config, result, indent=None)
    if args.json:
        print(blob)
    else:
        print("\n" + sections[-1] + "\n\n```json\n" + blob + "\n```", flush=True)
    return 0


def _write(
    out: Path | None,
    sections: list[str],
    meta: dict[str, object],
    config: SuiteConfig,
    result: SuiteResult,
) -> None:
    if out is None:
        return
    (out / "report.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    (out / "results.json").write_text(to_json(meta, config, result) + "\n", encoding="utf-8")
