"""Timing one iteration per variant (step.py): milliseconds (median after warm-up, with the
device synchronised), the setup it cost before that (compilation, graph capture, cuDNN
autotuning), effective TFLOP/s, peak memory, and the relative error of its image gradient
against plain fp32 on the same device."""

from __future__ import annotations

import gc
import logging
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from neural_style_daemon.bench.monitor import ArmMonitor

from .step import (
    Step,
    StepOutput,
    StepProblem,
    Variant,
    build_step,
    compile_mode,
    numerics,
    skip_reason,
)

log = logging.getLogger(__name__)
MIB = 1024 * 1024


@dataclass(frozen=True)
class StepSettings:
    warmup: int  # untimed calls after building the step (compiled graphs need 3)
    iterations: int  # timed calls; the median is reported
    compile_mode: str  # torch.compile's mode for the variants without CUDA graphs
    compile_backend: str = "inductor"


@dataclass(frozen=True)
class StepRow:
    """One variant at one size; the JSON holds one of these per row of the table."""

    size: int
    width: int
    height: int
    variant: str
    status: str  # ok; flagged (error above tolerance, or not finite); skipped; failed
    note: str  # why skipped or failed, or what was flagged
    ms_per_iter: float | None  # median of the timed iterations
    ms_min: float | None
    tflops: float | None  # gflop / ms_per_iter: the effective rate
    gflop: float  # per iteration, forward + backward, counted once per size
    setup_s: float | None  # warm-up time beyond `warmup` steady iterations
    grad_rel_error: float | None  # |g - g_fp32| / |g_fp32|, same device, same image
    loss_rel_error: float | None
    # Against the eager bf16 path instead: what a fast path changes beyond bf16's rounding.
    grad_rel_error_vs_bf16: float | None
    tolerance: float
    peak_mem_mb: float | None  # over what was in use before the variant was built
    iterations: int
    compile_mode: str | None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_gflop(problem: StepProblem, variant: Variant) -> float:
    """Floating-point operations of one iteration (forward and backward), in GFLOP, as
    torch's FlopCounterMode counts them (convolutions and matrix products)."""
    loss_fn, image = problem.loss_function(variant), problem.image()
    with numerics(variant), FlopCounterMode(display=False) as counter:
        loss_fn(image).backward()
    return counter.get_total_flops() / 1e9


def reference_output(problem: StepProblem, variant: Variant) -> StepOutput:
    """The loss and image gradient in plain fp32 (`variant` is the fp32 one), kept."""
    loss_fn, image = problem.loss_function(variant), problem.image()
    with numerics(variant):
        loss = loss_fn(image)
        loss.backward()
    assert image.grad is not None  # the backward pass just above set it
    return loss.detach().clone(), image.grad.detach().clone()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """|value - reference| / |reference| in float64 (Frobenius norms); inf for a zero
    reference with a non-zero value, nan if either holds a nan."""
    value, reference = value.detach().double(), reference.detach().double()
    difference = float(torch.linalg.vector_norm(value - reference))
    scale = float(torch.linalg.vector_norm(reference))
    if scale == 0:
        return 0.0 if difference == 0 else math.inf
    return difference / scale


def time_iterations(step: Step, iterations: int, device: torch.device) -> list[float]:
    """Milliseconds of each of `iterations` calls. On CUDA a pair of events brackets each
    call on the stream, read after one final synchronisation, so the clock reading adds no
    host wait between iterations; on other devices a call returns when its work is done."""
    if device.type != "cuda":
        times = []
        for _ in range(iterations):
            began = time.perf_counter()
            step()
            times.append(1000 * (time.perf_counter() - began))
        return times
    events = [
        (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        for _ in range(iterations)
    ]
    for start, end in events:
        start.record()
        step()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def measure_variant(
    problem: StepProblem,
    variant: Variant,
    settings: StepSettings,
    references: tuple[StepOutput, StepOutput | None],
    gflop: float,
) -> StepRow:
    """One row: the variant built, warmed up, timed and checked against `references` (plain
    fp32, and the eager bf16 path for bf16 variants); a variant that cannot run here, or
    fails, gives a row that says why instead of ending the run."""
    height, width = problem.start.shape[-2:]
    mode = None
    if variant.compiled:
        backend = settings.compile_backend
        mode = compile_mode(variant, settings.compile_mode) if backend == "inductor" else backend
    row: dict[str, Any] = dict(
        size=max(width, height),
        width=width,
        height=height,
        variant=variant.name,
        gflop=gflop,
        tolerance=variant.tolerance,
        iterations=settings.iterations,
        compile_mode=mode,
    )
    empty: dict[str, Any] = dict(
        ms_per_iter=None,
        ms_min=None,
        tflops=None,
        setup_s=None,
        grad_rel_error=None,
        loss_rel_error=None,
        grad_rel_error_vs_bf16=None,
        peak_mem_mb=None,
    )
    reason = skip_reason(variant, problem.device, settings.compile_backend)
    if reason is not None:
        return StepRow(**row, **empty, status="skipped", note=reason)
    try:
        measured = _run(problem, variant, settings, references)
    except torch.cuda.OutOfMemoryError as error:
        return StepRow(**row, **empty, status="failed", note=f"out of memory: {_line(error)}")
    except Exception as error:  # a benchmark reports a broken variant and goes on
        log.warning("%s at %d px failed", variant.name, row["size"], exc_info=True)
        return StepRow(
            **row, **empty, status="failed", note=f"{type(error).__name__}: {_line(error)}"
        )
    finally:
        _release(problem.device)
    ms, ms_min, setup_s, (grad_error, loss_error, vs_bf16), peak = measured
    flagged = not grad_error <= variant.tolerance  # also catches nan
    note = f"gradient error above {variant.tolerance:g}" if flagged else ""
    return StepRow(
        **row,
        status="flagged" if flagged else "ok",
        note=note,
        ms_per_iter=ms,
        ms_min=ms_min,
        tflops=gflop / ms if ms > 0 else None,
        setup_s=setup_s,
        grad_rel_error=grad_error,
        loss_rel_error=loss_error,
        grad_rel_error_vs_bf16=vs_bf16,
        peak_mem_mb=peak,
    )


def _run(
    problem: StepProblem,
    variant: Variant,
    settings: StepSettings,
    references: tuple[StepOutput, StepOutput | None],
) -> tuple[float, float, float, tuple[float, float, float | None], float]:
    device = problem.device
    # Inductor's CUDA graphs run a call eagerly, record on the next and replay from the third.
    warmup = max(settings.warmup, 3) if variant.compiled and variant.cuda_graph else settings.warmup
    with numerics(variant), ArmMonitor(device) as monitor:
        started = time.perf_counter()
        step = build_step(
            problem, variant, mode=settings.compile_mode, backend=settings.compile_backend
        )
        for _ in range(warmup):
            step()
        synchronize(device)
        setup_total = time.perf_counter() - started
        times = time_iterations(step, settings.iterations, device)
        loss, grad = step()  # read before any further call may overwrite them
        fp32, bf16 = references
        errors = (
            relative_error(grad, fp32[1]),
            relative_error(loss, fp32[0]),
            relative_error(grad, bf16[1]) if variant.bf16 and bf16 is not None else None,
        )
        del step
    median = statistics.median(times)
    setup_s = max(0.0, setup_total - warmup * median / 1000)
    return median, min(times), setup_s, errors, monitor.peak_bytes / MIB


def _release(device: torch.device) -> None:
    """Free what a variant kept (its compiled code's buffers, a graph's memory pool) before
    the next one is measured."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
