"""The speed suite's end-to-end parts: the in-process engine and the naive at one size, then a
real daemon (daemon_arm.py) with four jobs at that size, three judged by the reference loss
against the naive's time to the same loss, and one large job."""

from __future__ import annotations

import gc
import logging
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from neural_style_daemon.bench.inputs import BenchImages, at_size
from neural_style_daemon.bench.run import Bench, NaiveArm
from neural_style_daemon.engine.params import MIN_SIDE
from neural_style_daemon.errors import StyleTransferError
from neural_style_protocol.params import JobParams, Preset

from .config import (
    Budget,
    JobRow,
    NaiveSummary,
    PartCallback,
    SuiteConfig,
    SuiteResult,
    report_part,
)
from .daemon_arm import BenchDaemon, DaemonJob, style_file

log = logging.getLogger(__name__)


def in_process_part(
    config: SuiteConfig, images: BenchImages, budget: Budget, result: SuiteResult
) -> NaiveArm | None:
    """The in-process engine against the naive at the end-to-end size; the naive's run,
    scored, for judging the jobs after it (None if it did not run)."""
    size = config.e2e_size
    if not size:
        return None
    reason = budget.refuses(config.e2e_reserve)
    if reason is not None:
        result.notes.append(f"end to end at {size} px {reason}")
        return None
    try:
        return _engine_and_naive(config, images, size, result)
    except Exception as error:  # reported; the other parts still run
        log.warning("the engine against the naive failed", exc_info=True)
        result.notes.append(f"end to end at {size} px failed: {_describe(error)}")
        return None


def daemon_parts(
    config: SuiteConfig,
    images: BenchImages,
    naive: NaiveArm | None,
    budget: Budget,
    result: SuiteResult,
    on_part: PartCallback,
) -> None:
    """A daemon: four jobs at the end-to-end size, judged against `naive` (part `e2e`), and
    the large job (part `large`)."""
    large = config.large_size
    large_refused = budget.refuses(config.large_reserve) if large else None
    if naive is not None or (large and large_refused is None):
        bench = config.bench
        if bench.weights == "random" and bench.seed != 0:
            result.notes.append(
                "the daemon's random weights have seed 0, the reference "
                f"loss's seed {bench.seed}: its losses are not comparable"
            )
        try:
            with BenchDaemon(bench.weights, str(bench.device)) as daemon:
                result.daemon_start_seconds = daemon.start_seconds
                result.daemon_load_seconds = daemon.load_seconds
                if naive is not None:
                    result.jobs = _e2e_jobs(daemon, config, images, naive, budget)
                report_part(on_part, "e2e", result, budget)
                if large:
                    result.large = _large_job(daemon, config, images, budget)
        except Exception as error:  # the daemon would not start, or broke: reported
            log.warning("the daemon part failed", exc_info=True)
            result.notes.append(f"the daemon: {_describe(error)}")
    elif large:
        result.large = JobRow(_large_label(config), large, "skipped", large_refused or "")
    report_part(on_part, "e2e", result, budget)
    report_part(on_part, "large", result, budget)


def _engine_and_naive(
    config: SuiteConfig, images: BenchImages, size: int, result: SuiteResult
) -> NaiveArm:
    bench = Bench(replace(config.bench, sizes=(size,)), images)
    row, naive = bench.measure_with_naive(size)
    result.engine_row = row
    result.naive = NaiveSummary(
        arch=config.bench.naive_arch,
        iterations=naive.run.iterations,
        start_loss=naive.snapshots[0].loss,
        final_loss=naive.snapshots[-1].loss,
        best_loss=min(s.loss for s in naive.snapshots),
        run_seconds=naive.run.seconds,
    )
    del bench  # its networks: the daemon's worker loads its own
    free_memory(config.bench.device)
    return naive


NEW_SHAPE_LABEL = "another size (the content's left three quarters)"


def _e2e_jobs(
    daemon: BenchDaemon, config: SuiteConfig, images: BenchImages, naive: NaiveArm, budget: Budget
) -> list[JobRow]:
    """A warm-up job (the content mirrored: new content targets, warm style and kernels),
    then the content itself (the timed first job with it), the same job again (its targets
    now cached, as for a user's repeat), and a job on the content cropped to another shape:
    what a user's first job on a layer of a new size costs (cuDNN tunes each new shape, and
    the engine captures a graph per scale), not scored, since it is another image."""
    size = config.e2e_size
    content = at_size(images.content, size)
    style = style_file(at_size(images.style, size, enlarge=False))
    params = job_params(config)
    cropped = np.ascontiguousarray(content[:, : max(content.shape[1] * 3 // 4, MIN_SIDE)])
    jobs = (
        ("warm-up (content mirrored)", np.ascontiguousarray(content[:, ::-1])),
        ("first job with this content", content),
        ("repeat (targets cached)", content),
        (NEW_SHAPE_LABEL, cropped),
    )
    rows = []
    for label, image in jobs:
        try:
            job = daemon.run_job(image, style, params, timeout=max(budget.left(), 1.0))
        except StyleTransferError as error:
            rows.append(JobRow(label, size, "failed", str(error)))
            continue
        if image is cropped:
            rows.append(JobRow(**_job_fields(label, size, job), note="another image: not scored"))
        else:
            rows.append(_judged(label, size, job, naive, mirrored=image is not content))
    return rows


def _judged(label: str, size: int, job: DaemonJob, naive: NaiveArm, *, mirrored: bool) -> JobRow:
    """The job's row, its image scored by the reference loss (the mirrored warm-up's result
    mirrored back, so that it is scored against the same content) and set against the
    naive's time to that loss."""
    image = np.ascontiguousarray(job.image[:, ::-1]) if mirrored else job.image
    return JobRow(**_job_fields(label, size, job), **judged_fields(naive, image, job.seconds))


def judged_fields(naive: NaiveArm, image: np.ndarray, seconds: float) -> dict[str, Any]:
    """A result's reference loss, the naive's time to that loss and the ratio of the times
    (against the naive's whole run, as a lower bound, if it never got that low)."""
    loss = naive.reference(image)
    naive_seconds = naive.seconds_to(loss)
    bound = naive_seconds is None
    ratio_seconds = naive.run.seconds if naive_seconds is None else naive_seconds
    return dict(
        reference_loss=loss,
        naive_seconds_to_loss=naive_seconds,
        ratio=ratio_seconds / seconds,
        ratio_is_lower_bound=bound,
        note="the naive never scored this low: ratio against its whole run" if bound else "",
    )


def _job_fields(label: str, size: int, job: DaemonJob) -> dict[str, Any]:
    return dict(
        job=label,
        size=size,
        status="ok",
        width=job.width,
        height=job.height,
        seconds=job.seconds,
        worker_seconds=job.worker_seconds,
        steps=job.steps,
        target_cache_hits=job.target_cache_hits,
        peak_mem_mb=job.peak_mem_mb,
        warnings=job.warnings,
    )


def _large_job(
    daemon: BenchDaemon, config: SuiteConfig, images: BenchImages, budget: Budget
) -> JobRow:
    size, label = config.large_size, _large_label(config)
    if (reason := budget.refuses(config.large_reserve)) is not None:
        return JobRow(label, size, "skipped", reason)
    content = at_size(images.content, size)
    style = style_file(at_size(images.style, size, enlarge=False))
    params = job_params(config)
    try:
        # Cancelled at the end of the budget: the suite must end inside its time.
        job = daemon.run_job(content, style, params, timeout=max(budget.left(), 1.0))
    except StyleTransferError as error:
        return JobRow(label, size, "failed", str(error))
    return JobRow(**_job_fields(label, size, job))


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _describe(error: BaseException) -> str:
    if isinstance(error, StyleTransferError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def job_params(config: SuiteConfig) -> JobParams:
    return JobParams(
        preset=Preset(config.bench.preset),
        seed=config.bench.seed,
        iterations=config.job_iterations,
    )


def _large_label(config: SuiteConfig) -> str:
    return f"{config.large_size} px, preset {config.bench.preset}"
