"""What the GPU suite (`python -m gpu_suite`) prints: a header that says where and how it ran
(card, torch, date, command, commit), one Markdown table per part, the issue's targets against
the figures, and a JSON blob with everything."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

from neural_style_daemon.bench.run import BenchConfig, format_table

from .config import JobRow, SuiteConfig, SuiteResult
from .engine_jobs import ENGINE_VARIANTS
from .step import VARIANTS

# Issue 5's targets, for one H100: per-iteration milliseconds by size; a warm daemon's
# default-preset job; a large job.
STEP_TARGET_MS = {512: 1.3, 1024: 3.5}
JOB_TARGET = (512, 0.5, 15.0)  # size, seconds submit to result, times faster than the naive
LARGE_TARGET = (4096, 60.0, 40.0)  # size, seconds, GiB


def format_header(meta: dict[str, object], config: SuiteConfig, sources: str) -> str:
    bench = config.bench
    card = meta["card"]
    if "capability" in meta:
        card = (
            f"{card} (sm {meta['capability']}, {meta['multiprocessors']} SMs, "
            f"{meta['memory_gib']} GiB)"
        )
    return "\n".join(
        [
            "## GPU suite: python -m gpu_suite (issue 5)",
            f"- command: `{meta['command']}`",
            f"- date: {meta['date']}; commit: {meta['commit'] or 'unknown'}",
            f"- device: {meta['device']}, {card}; {meta['cpus']} CPUs, torch uses "
            f"{meta['cpu_threads']} threads",
            f"- torch {meta['torch']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}, "
            f"Python {meta['python']}",
            f"- weights: {bench.weights} (seed {bench.seed}); images: {sources}; preset "
            f"{bench.preset}; budget {config.budget_seconds:g} s",
        ]
    )


def _num(value: float | None, missing: str = "-") -> str:
    if value is None or not math.isfinite(value):
        return missing if value is None else str(value)
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _err(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def format_steps(title: str, rows: list, config: SuiteConfig) -> str:
    lines = [
        f"### {title}",
        "",
        "| size | variant | ms/iter | min ms | TFLOP/s | GFLOP/iter | setup s | "
        "grad err vs fp32 | loss err vs fp32 | grad err vs bf16 eager | peak MiB | "
        "status |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        status = r.status if not r.note else f"{r.status}: {r.note}"
        mode = f" ({r.compile_mode})" if r.compile_mode else ""
        lines.append(
            f"| {r.width}x{r.height} | {r.variant}{mode} | {_num(r.ms_per_iter)} | "
            f"{_num(r.ms_min)} | {_num(r.tflops)} | {_num(r.gflop)} | {_num(r.setup_s)} | "
            f"{_err(r.grad_rel_error)} | {_err(r.loss_rel_error)} | "
            f"{_err(r.grad_rel_error_vs_bf16)} | {_num(r.peak_mem_mb)} | "
            f"{status} |"
        )
    names = dict.fromkeys(r.variant for r in rows)
    lines += ["", *(f"- {n}: {VARIANTS[n].description}" for n in names)]
    lines.append(
        f"- median of {config.step.iterations} iterations after {config.step.warmup} "
        "warm-up; setup s = warm-up time beyond steady state (compile, capture, "
        "autotuning); errors are relative (norm of the difference over the norm), "
        "against plain fp32 and against the eager bf16 path on the same device"
    )
    return "\n".join(lines)


def format_e2e(result: SuiteResult, config: SuiteConfig) -> str:
    lines = [f"### End to end at {config.e2e_size} px against the naive reference", ""]
    if result.engine_row is not None:
        bench: BenchConfig = config.bench
        lines += [
            "In process, the engine with weights matched to the reference loss, to the "
            "naive's final loss:",
            "",
            format_table([result.engine_row], bench),
            "",
        ]
    if result.naive is not None:
        n = result.naive
        lines.append(
            f"Naive ({n.arch.upper()}, {n.iterations} L-BFGS iterations): reference "
            f"loss {n.start_loss:.4g} at the start, {n.final_loss:.4g} at the end "
            f"(best {n.best_loss:.4g}), whole run {n.run_seconds:.2f} s."
        )
    if result.daemon_start_seconds is not None:
        iterations = (
            f", {config.job_iterations} iterations per scale" if config.job_iterations else ""
        )
        lines.append(
            f"Daemon: answering {result.daemon_start_seconds:.1f} s after its start, "
            f"its worker's model loaded after {result.daemon_load_seconds:.1f} s. "
            f"Jobs: preset {config.bench.preset}{iterations}."
        )
    if result.jobs:
        lines += [
            "",
            "| job | result | submit to result s | worker s | steps | cached "
            "targets | reference loss | naive s to that loss | naive / job | peak MiB "
            "| notes |",
            "|" + "---|" * 11,
        ]
        lines += [_job_line(j) for j in result.jobs]
    return "\n".join(lines)


def _job_line(j: JobRow) -> str:
    notes = "; ".join(x for x in (j.note, *j.warnings) if x) or ""
    return (
        f"| {j.job} | {_result_size(j)} | {_num(j.seconds)} | {_num(j.worker_seconds)} | "
        f"{j.steps if j.steps is not None else '-'} | "
        f"{j.target_cache_hits if j.target_cache_hits is not None else '-'} | {_loss(j)} | "
        f"{_naive_seconds(j)} | {_ratio(j)} | {_num(j.peak_mem_mb)} | "
        f"{notes} |"
    )


def _result_size(j: JobRow) -> str:
    return f"{j.width}x{j.height}" if j.width else j.status


def _loss(j: JobRow) -> str:
    return "-" if j.reference_loss is None else f"{j.reference_loss:.4g}"


def _naive_seconds(j: JobRow) -> str:
    if j.reference_loss is None:  # not scored: skipped or failed
        return "-"
    return _num(j.naive_seconds_to_loss, "never")


def _ratio(j: JobRow) -> str:
    return "-" if j.ratio is None else f"{'>' if j.ratio_is_lower_bound else ''}{j.ratio:.2f}x"


def format_engine_jobs(result: SuiteResult, config: SuiteConfig) -> str:
    """The engine variants' jobs (engine_jobs.py), one row each."""
    lines = [
        f"### The engine's speed-ups one at a time: whole jobs in process at {config.e2e_size} px",
        "",
        f"Preset {config.bench.preset}; a warm-up job on the mirrored content first; "
        "timed from the call to the result.",
        "",
        "| engine | result | job s | steps | ms/step | reference loss | naive s to that "
        "loss | naive / job | peak MiB | notes |",
        "|" + "---|" * 10,
    ]
    for j in result.engine_jobs:
        per_step = (
            1000 * j.worker_seconds / j.steps if j.worker_seconds is not None and j.steps else None
        )
        lines.append(
            f"| {j.job} | {_result_size(j)} | {_num(j.seconds)} | "
            f"{j.steps if j.steps is not None else '-'} | {_num(per_step)} | {_loss(j)} | "
            f"{_naive_seconds(j)} | {_ratio(j)} | {_num(j.peak_mem_mb)} | "
            f"{j.note} |"
        )
    lines += ["", "; ".join(f"{v.name}: {v.description}" for v in ENGINE_VARIANTS)]
    return "\n".join(lines)


def format_large(result: SuiteResult, config: SuiteConfig) -> str:
    j = result.large
    lines = [f"### A {config.large_size} px job through the warm daemon", ""]
    if j is None:
        return "\n".join([*lines, "not run"])
    gib = None if j.peak_mem_mb is None else j.peak_mem_mb / 1024
    notes = "; ".join(x for x in (j.note, *j.warnings) if x)
    return "\n".join(
        [
            *lines,
            "| job | result | submit to result s | worker s | steps | peak GiB | notes |",
            "|" + "---|" * 7,
            f"| {j.job} | {f'{j.width}x{j.height}' if j.width else j.status} | {_num(j.seconds)} "
            f"| {_num(j.worker_seconds)} | {j.steps if j.steps is not None else '-'} | "
            f"{_num(gib)} | {notes} |",
        ]
    )


def targets(result: SuiteResult) -> list[dict[str, object]]:
    """Issue 5's targets that this run measured: what, the figure, whether it is met."""
    out: list[dict[str, object]] = []
    for size, limit in STEP_TARGET_MS.items():
        timed = [
            (r.ms_per_iter, r) for r in result.step if r.size == size and r.ms_per_iter is not None
        ]
        if timed:
            ms, best = min(timed, key=lambda pair: pair[0])
            flagged = ", its gradient flagged" if best.status == "flagged" else ""
            out.append(
                {
                    "target": f"one iteration at {size} px <= {limit} ms",
                    "measured": f"{ms:.2f} ms ({best.variant}, "
                    f"{best.tflops or 0:.0f} TFLOP/s{flagged})",
                    "met": ms <= limit,
                }
            )
    size, seconds, times = JOB_TARGET
    job = next(
        (
            j
            for j in result.jobs
            if j.size == size and j.status == "ok" and j.job.startswith("first")
        ),
        None,
    )
    if job is not None and job.seconds is not None and job.ratio is not None:
        out.append(
            {
                "target": f"{size} px job via a warm daemon <= {seconds} s",
                "measured": f"{job.seconds:.2f} s",
                "met": job.seconds <= seconds,
            }
        )
        out.append(
            {
                "target": f"... >= {times:g}x faster than the naive to the same loss",
                "measured": f"{job.ratio:.2f}x",
                "met": job.ratio >= times,
            }
        )
    size, seconds, gib = LARGE_TARGET
    large = result.large
    if large is not None and large.size == size and large.status == "ok":
        assert large.seconds is not None  # a job that ended "ok" has its time
        # Out of memory, the daemon retries at a smaller size: that is not the target's job.
        whole = max(large.width or 0, large.height or 0) >= size
        shrunk = "" if whole else f", retried at {large.width}x{large.height}"
        out.append(
            {
                "target": f"{size} px job <= {seconds:g} s",
                "measured": f"{large.seconds:.1f} s{shrunk}",
                "met": whole and large.seconds <= seconds,
            }
        )
        peak = (large.peak_mem_mb or 0) / 1024
        out.append(
            {
                "target": f"{size} px job within {gib:g} GiB",
                "measured": f"{peak:.1f} GiB (allocated){shrunk}",
                "met": whole and peak <= gib,
            }
        )
    return out


def format_targets(found: list[dict[str, object]]) -> str:
    lines = ["### Issue 5 targets (set for one H100)", ""]
    if not found:
        return "\n".join([*lines, "none of the targets' sizes was measured in this run"])
    lines += ["| target | measured | met |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'no'} |" for t in found]
    return "\n".join(lines)


def to_json(
    meta: dict[str, object], config: SuiteConfig, result: SuiteResult, indent: int | None = 1
) -> str:
    """Everything, as one JSON object; floats that are not finite become strings."""
    blob = {
        "meta": meta,
        "config": {
            "step_sizes": config.step_sizes,
            "variants": config.variants,
            **asdict(config.step),
            "e2e_size": config.e2e_size,
            "large_size": config.large_size,
            "budget_seconds": config.budget_seconds,
            "job_iterations": config.job_iterations,
            "naive_arch": config.bench.naive_arch,
            "naive_iterations": config.bench.naive_iterations,
            "preset": config.bench.preset,
        },
        "step": [asdict(r) for r in result.step],
        "engine_vs_naive": asdict(result.engine_row) if result.engine_row else None,
        "naive": asdict(result.naive) if result.naive else None,
        "daemon_start_seconds": result.daemon_start_seconds,
        "daemon_load_seconds": result.daemon_load_seconds,
        "jobs": [asdict(j) for j in result.jobs],
        "engine_jobs": [asdict(j) for j in result.engine_jobs],
        "large": asdict(result.large) if result.large else None,
        "targets": targets(result),
        "notes": result.notes,
        "seconds": result.seconds,
    }
    return json.dumps(_finite(blob), indent=indent)


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
