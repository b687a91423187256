"""The speed suite's configuration, its time budget and its results (see suite.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from neural_style_daemon.bench.run import BenchConfig, BenchRow

from .step_timing import StepRow, StepSettings


@dataclass(frozen=True)
class SuiteConfig:
    bench: BenchConfig  # device, weights, seed, preset, naive arm (its `sizes` are unused)
    step_sizes: tuple[int, ...]
    variants: tuple[str, ...]
    step: StepSettings
    e2e_size: int  # 0: skip the end-to-end part
    large_size: int  # 0: skip the large job
    budget_seconds: float
    job_iterations: int | None = None  # the daemon jobs' iterations per scale; None: preset's
    # Seconds a part needs left in the budget to start (a compile: each one).
    e2e_reserve: float = 0.0
    large_reserve: float = 0.0
    compile_reserve: float = 0.0


@dataclass(frozen=True)
class JobRow:
    """A daemon job as the suite reports it (the image left out)."""

    job: str
    size: int  # asked for (long side)
    status: str  # ok, failed, skipped
    note: str = ""
    width: int | None = None  # of the result
    height: int | None = None
    seconds: float | None = None  # submit to result
    worker_seconds: float | None = None
    steps: int | None = None
    target_cache_hits: int | None = None
    peak_mem_mb: float | None = None
    reference_loss: float | None = None
    naive_seconds_to_loss: float | None = None  # None: the naive never scored that low
    ratio: float | None = None  # naive seconds to the job's loss / the job's seconds
    ratio_is_lower_bound: bool = False  # the naive's whole run was used instead
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class NaiveSummary:
    arch: str
    iterations: int
    start_loss: float
    final_loss: float
    best_loss: float
    run_seconds: float


@dataclass
class SuiteResult:
    step: list[StepRow] = field(default_factory=list)
    engine_row: BenchRow | None = None  # the in-process engine against the naive
    naive: NaiveSummary | None = None
    daemon_start_seconds: float | None = None  # launch to answering
    daemon_load_seconds: float | None = None  # launch to its worker's model loaded
    jobs: list[JobRow] = field(default_factory=list)
    engine_jobs: list[JobRow] = field(default_factory=list)  # in process, by engine variant
    large: JobRow | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # the whole suite so far
    reported: list[str] = field(default_factory=list)  # the parts handed to on_part


class Budget:
    """The suite's time: what is left of `seconds` since it was made."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.monotonic()

    def used(self) -> float:
        return time.monotonic() - self.start

    def left(self) -> float:
        return self.seconds - self.used()

    def refuses(self, needed: float) -> str | None:
        """Why something that needs `needed` seconds cannot start now, or None."""
        left = self.left()
        if left <= 0 or left < needed:
            return f"skipped: {max(left, 0):.0f} s of the {self.seconds:g} s budget left"
        return None


PartCallback = Callable[[str, SuiteResult], None]


def report_part(on_part: PartCallback, name: str, result: SuiteResult, budget: Budget) -> None:
    """`on_part` once per part, however the part ended."""
    if name not in result.reported:
        result.reported.append(name)
        result.seconds = budget.used()
        on_part(name, result)
