"""The speed suite's `engine` part: the engine's own speed-ups switched off one at a time.

Each variant is a StyleEngine in this process running the job the daemon's jobs run (the
preset, at the end-to-end size): a warm-up job on the mirrored content, then the content
itself, timed from the call to the result and judged as the daemon's jobs are (the result's
reference loss against the naive's time to the same loss). Set against each other, the rows
say what each speed-up is worth in a whole job; set against the daemon's first job, the shipped
row says what the daemon adds. Variants whose switch does nothing on this device are skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neural_style_daemon.bench.inputs import BenchImages, at_size
from neural_style_daemon.bench.run import MIB, NaiveArm
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.stylize import StyleEngine
from neural_style_daemon.server.job_params import to_style_params

from .config import Budget, JobRow, SuiteConfig
from .e2e import free_memory, job_params, judged_fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineVariant:
    name: str
    description: str
    # StyleEngine keyword arguments: its measurement-only, underscored ones.
    settings: dict[str, Any] = field(default_factory=dict)
    cuda_only: bool = False  # its switch changes nothing elsewhere


ENGINE_VARIANTS = (
    EngineVariant("shipped", "as the daemon runs it"),
    EngineVariant(
        "reads-every-step",
        "the loss read back after every step, not every few",
        {"_steps_between_reads": 1},
        cuda_only=True,
    ),
    EngineVariant(
        "eager",
        "no CUDA graphs: each step launched kernel by kernel",
        {"_cuda_graphs": False},
        cuda_only=True,
    ),
    EngineVariant("fp32", "fp32 instead of bf16 autocast", {"_precision": "fp32"}),
)


def engine_variant_jobs(
    config: SuiteConfig, images: BenchImages, naive: NaiveArm, budget: Budget
) -> list[JobRow]:
    """One row per variant, in ENGINE_VARIANTS order."""
    device, size = config.bench.device, config.e2e_size
    content = at_size(images.content, size)
    style = at_size(images.style, size, enlarge=False)
    params = to_style_params(job_params(config))
    rows = []
    for variant in ENGINE_VARIANTS:
        if variant.cuda_only and device.type != "cuda":
            rows.append(JobRow(variant.name, size, "skipped", "changes nothing without CUDA"))
            continue
        if (reason := budget.refuses(0.0)) is not None:
            rows.append(JobRow(variant.name, size, "skipped", reason))
            continue
        log.info("%d px: the engine %s", size, variant.name)
        try:
            rows.append(_job(config, variant, content, style, params, naive))
        except Exception as error:  # out of memory, a CUDA error: reported, the suite goes on
            log.warning("the engine %s failed", variant.name, exc_info=True)
            rows.append(JobRow(variant.name, size, "failed", f"{type(error).__name__}: {error}"))
        free_memory(device)
    return rows


def _job(
    config: SuiteConfig,
    variant: EngineVariant,
    content: np.ndarray,
    style: np.ndarray,
    params: StyleParams,
    naive: NaiveArm,
) -> JobRow:
    device = config.bench.device
    engine = StyleEngine(
        config.bench.weights, str(device), seed=config.bench.seed, **variant.settings
    )
    engine.stylize(np.ascontiguousarray(content[:, ::-1]), [style], params)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = engine.stylize(content, [style], params)
    seconds = time.perf_counter() - start
    return JobRow(
        job=variant.name,
        size=config.e2e_size,
        status="ok",
        width=result.image.shape[1],
        height=result.image.shape[0],
        seconds=seconds,
        worker_seconds=result.elapsed,
        steps=result.steps,
        target_cache_hits=result.target_cache_hits,
        peak_mem_mb=result.peak_memory_bytes / MIB,
        **judged_fields(naive, result.image[..., :3], seconds),
    )
