"""The GPU suite (`python -m gpu_suite`): everything issue 5 ("Speed: close to the GPU's
floor") asks to be measured, in one run that fits a time budget.

Parts, in the order they run (the slow, unbounded compilation last, so that a run cut short by
the budget still has the rest):
1. `step`: one iteration per variant and size, eager and captured (step.py, step_timing.py);
2. `engine`: after the in-process engine against the naive (the package's bench/run.py), the
   engine's own speed-ups switched off one at a time, each a whole default-preset job
   (engine_jobs.py);
3. `e2e`: that in-process comparison, and a warm daemon's default-preset jobs against the
   naive reference, judged by the reference loss (daemon_arm.py);
4. `large`: one large job through the same daemon, its time and peak memory;
5. `compile`: the torch.compile variants of part 1, their compile time included.
Each part reports through `on_part` as soon as it ends; a part or variant that the remaining
budget cannot hold is skipped, with a note.
"""

from __future__ import annotations

import gc
import logging

import torch

from neural_style_daemon.bench.inputs import BenchImages, at_size
from neural_style_daemon.engine.params import StyleParams
from neural_style_daemon.engine.stylize import to_tensor
from neural_style_daemon.engine.weights import load_vgg

from .config import Budget, PartCallback, SuiteConfig, SuiteResult, report_part
from .e2e import daemon_parts, free_memory, in_process_part
from .engine_jobs import engine_variant_jobs
from .step import COMPILED_VARIANTS, VARIANTS, StepProblem, Variant, private_compile_cache
from .step_timing import StepRow, count_gflop, measure_variant, reference_output

log = logging.getLogger(__name__)


def run_suite(
    config: SuiteConfig, images: BenchImages, on_part: PartCallback = lambda _part, _result: None
) -> SuiteResult:
    """Run every part that the budget allows; `on_part(name, result)` after each."""
    budget, result = Budget(config.budget_seconds), SuiteResult()
    eager = [n for n in config.variants if n not in COMPILED_VARIANTS]
    compiled = [n for n in config.variants if n in COMPILED_VARIANTS]
    _step_part(config, images, eager, budget, result, 0.0)
    report_part(on_part, "step", result, budget)
    naive = in_process_part(config, images, budget, result)
    if naive is not None:
        result.engine_jobs = engine_variant_jobs(config, images, naive, budget)
    report_part(on_part, "engine", result, budget)
    daemon_parts(config, images, naive, budget, result, on_part)
    _compile_part(config, images, compiled, budget, result)
    report_part(on_part, "compile", result, budget)
    return result


# --- per iteration ---------------------------------------------------------------------------


def _problem(config: SuiteConfig, images: BenchImages, size: int, vgg) -> StepProblem:
    device = config.bench.device
    content = at_size(images.content, size)
    style = at_size(images.style, size, enlarge=False)
    generator = torch.Generator().manual_seed(config.bench.seed)
    start = to_tensor(content, torch.device("cpu"))[None]
    # Halfway between the content and noise: a gradient with both terms at work, on any input.
    start = 0.5 * start + 0.5 * torch.rand(start.shape, generator=generator)
    return StepProblem(
        vgg,
        to_tensor(content, device)[None],
        to_tensor(style, device)[None],
        start.to(device),
        StyleParams(preset=config.bench.preset),
    )


def _step_part(
    config: SuiteConfig,
    images: BenchImages,
    names: list[str],
    budget: Budget,
    result: SuiteResult,
    reserve: float,
) -> None:
    """Rows for the variants `names` at every size (their setup checked against `reserve`)."""
    if not names:
        return
    bench = config.bench
    vgg = load_vgg(bench.weights, seed=bench.seed).to(bench.device)
    fp32 = VARIANTS["fp32"]
    for size in config.step_sizes:
        if (reason := budget.refuses(reserve)) is not None:
            result.step += [_skipped(size, VARIANTS[n], config, reason) for n in names]
            continue
        problem = _problem(config, images, size, vgg)
        gflop = count_gflop(problem, fp32)
        references = (
            reference_output(problem, fp32),
            reference_output(problem, VARIANTS["bf16-cl"]),
        )
        for name in names:
            variant = VARIANTS[name]
            reason = budget.refuses(reserve)
            if reason is not None:
                result.step.append(_skipped(size, variant, config, reason, problem, gflop))
                continue
            log.info("%d px: %s", size, name)
            result.step.append(measure_variant(problem, variant, config.step, references, gflop))
        del problem, references
        gc.collect()
    del vgg
    free_memory(bench.device)


def _skipped(
    size: int,
    variant: Variant,
    config: SuiteConfig,
    note: str,
    problem: StepProblem | None = None,
    gflop: float = float("nan"),
) -> StepRow:
    height, width = problem.start.shape[-2:] if problem is not None else (size, size)
    return StepRow(
        size=size,
        width=width,
        height=height,
        variant=variant.name,
        status="skipped",
        note=note,
        ms_per_iter=None,
        ms_min=None,
        tflops=None,
        gflop=gflop,
        setup_s=None,
        grad_rel_error=None,
        loss_rel_error=None,
        grad_rel_error_vs_bf16=None,
        tolerance=variant.tolerance,
        peak_mem_mb=None,
        iterations=config.step.iterations,
        compile_mode=None,
    )


def _compile_part(
    config: SuiteConfig, images: BenchImages, names: list[str], budget: Budget, result: SuiteResult
) -> None:
    if not names:
        return
    with private_compile_cache():
        _step_part(config, images, names, budget, result, config.compile_reserve)
