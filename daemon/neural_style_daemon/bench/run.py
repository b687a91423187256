"""`neural-style bench`: this engine against the naive reference, size by size, in one process.

Per size: both arms are warmed up; the naive runs its fixed iteration count and its final image
sets the target (its reference loss); then the engine runs, with weights matched to the
reference objective, until its snapshots reach that loss. Both are judged by the same
reference loss on VGG16 at the output size (see reference.py), on the same images, device and
weights.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..engine import StyleParams
from ..engine.stylize import StyleEngine, to_array, to_tensor
from ..engine.weights import load_vgg
from ..errors import InvalidInputError
from .engine_arm import EngineRun, Snapshot, run_engine, step_seconds
from .inputs import BenchImages, at_size
from .monitor import ArmMonitor
from .naive import NaiveRun, Observer, run_naive
from .reference import ReferenceLoss, matched_weights, plain_fp32

log = logging.getLogger(__name__)

WARMUP_ITERATIONS = 2
FOREIGN_CPU_WARNING = 0.1
MIB = 1024 * 1024


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run measures."""

    device: torch.device
    sizes: tuple[int, ...]
    naive_iterations: int
    naive_arch: str = "vgg19"
    weights: str = "imagenet"
    seed: int = 0
    preset: str = "normal"
    stop_at_target: bool = True
    # ../shared/docs/gpu-baseline.md's naive is plain fp32; PyTorch allows TF32.
    naive_tf32: bool = False
    engine_precision: str = "auto"  # StyleEngine's: bf16 autocast on CUDA, or "fp32"
    engine_cuda_graphs: bool = True  # StyleEngine's: replay captured steps on CUDA


@dataclass(frozen=True)
class BenchRow:
    """One size's results; the JSON output is one of these per size."""

    size: int
    width: int
    height: int
    device: str
    naive_arch: str
    naive_iterations: int  # L-BFGS iterations the naive ran
    engine_preset: str
    engine_precision: str  # "auto" (bf16 autocast on CUDA) or "fp32"
    ms_per_iter: float  # the engine at the output size
    naive_ms_per_iter: float
    seconds_to_naive_loss: float | None  # the engine; None: not reached
    naive_seconds: float  # the naive's time to its own final loss (first reached)
    speedup: float | None  # naive_seconds / seconds_to_naive_loss
    peak_mem_mb: float  # the engine's peak over its start (see memory.py)
    naive_peak_mem_mb: float
    start_loss: float  # reference loss of the content image, where both start
    naive_loss: float  # reference loss of the naive's final image: the target
    naive_best_loss: float  # the lowest it had on the way (L-BFGS may climb back up)
    naive_iterations_to_naive_loss: int
    naive_run_seconds: float  # the naive's whole run
    engine_loss: float  # at the snapshot that reached the target, else the last one
    engine_steps_to_naive_loss: int | None
    engine_steps: int  # steps the engine ran (it stops at the target unless told not to)
    engine_seconds: float
    # The largest share of the CPUs' time that other processes took during either arm: above
    # about 0.1 the times above are not to be trusted (see monitor.py).
    foreign_cpu: float


@dataclass(frozen=True)
class NaiveArm:
    """The naive's run at one size with its image's reference loss at every evaluation."""

    reference: ReferenceLoss
    run: NaiveRun
    snapshots: tuple[Snapshot, ...]  # the last one is its final image

    def seconds_to(self, loss: float) -> float | None:
        """The naive's time to first score `loss` or lower; None if it never did."""
        return next((s.seconds for s in self.snapshots if s.loss <= loss), None)


class Bench:
    """The networks, loaded once, and the images; `measure(size)` gives one row."""

    def __init__(self, config: BenchConfig, images: BenchImages) -> None:
        self.config, self.images = config, images
        device = config.device
        self.engine = StyleEngine(
            config.weights,
            str(device),
            seed=config.seed,
            _precision=config.engine_precision,
            _cuda_graphs=config.engine_cuda_graphs,
        )
        # The reference scores on the product's network: the engine's own VGG16.
        self.reference_vgg = self.engine.model
        self.naive_vgg = load_vgg(config.weights, arch=config.naive_arch, seed=config.seed)
        self.naive_vgg = self.naive_vgg.to(device)

    def sync(self) -> None:
        if self.config.device.type == "cuda":
            torch.cuda.synchronize(self.config.device)

    def measure(self, size: int) -> BenchRow:
        """Warm both arms up, run the naive, then the engine to the naive's final loss."""
        return self.measure_with_naive(size)[0]

    def measure_with_naive(self, size: int) -> tuple[BenchRow, NaiveArm]:
        """`measure`, and the naive's run scored at every evaluation, for judging other runs
        (a daemon's job) against the same naive."""
        content = at_size(self.images.content, size)
        style = at_size(self.images.style, size, enlarge=False)
        reference = ReferenceLoss(self.reference_vgg, content, style)
        params = StyleParams(
            preset=self.config.preset, seed=self.config.seed, **matched_weights(reference)
        )
        self._warm_up(content, style, params)
        log.info(
            "%d px: naive (%s, %d iterations)",
            size,
            self.config.naive_arch,
            self.config.naive_iterations,
        )
        with ArmMonitor(self.config.device) as naive_monitor:
            naive, naive_snapshots = self._run_naive_scored(content, style, reference)
        target = naive_snapshots[-1].loss
        log.info("%d px: engine (preset %s) to loss %.6g", size, self.config.preset, target)
        self._forget_targets()
        with ArmMonitor(self.config.device) as engine_monitor:
            engine = run_engine(
                self.engine,
                content,
                style,
                params,
                reference,
                target,
                stop_at_target=self.config.stop_at_target,
                sync=self.sync,
            )
        step_times = engine.output_step_seconds
        if len(step_times) < 2:  # stopped before the output scale: time a few steps there
            step_times = step_seconds(self.engine, content, style, params, 3, sync=self.sync)
        row = self._row(
            content, (naive, naive_snapshots), engine, step_times, (naive_monitor, engine_monitor)
        )
        return row, NaiveArm(reference, naive, tuple(naive_snapshots))

    def _run_naive(
        self,
        content: np.ndarray,
        style: np.ndarray,
        iterations: int,
        observe: Observer | None = None,
    ) -> NaiveRun:
        device = self.config.device
        with plain_fp32(tf32=self.config.naive_tf32):
            return run_naive(
                self.naive_vgg,
                to_tensor(content, device),
                to_tensor(style, device),
                iterations,
                sync=self.sync,
                on_evaluation=observe,
            )

    def _run_naive_scored(
        self, content: np.ndarray, style: np.ndarray, reference: ReferenceLoss
    ) -> tuple[NaiveRun, list[Snapshot]]:
        """The naive run, its image scored by the reference loss at every evaluation and at the
        end (the scoring's time left out): its final loss is the target, and the first time it
        was at or under that is its time to it (L-BFGS without line search does not descend
        monotonically, so that can come before the end)."""
        snapshots: list[Snapshot] = []

        def observe(image: torch.Tensor, seconds: float) -> None:
            snapshots.append(Snapshot(len(snapshots), 1, seconds, reference(to_array(image))))

        naive = self._run_naive(content, style, self.config.naive_iterations, observe)
        # Rounded to 8 bits like the engine's snapshots: both are judged as images.
        final = reference(to_array(naive.image))
        snapshots.append(Snapshot(naive.iterations, 1, naive.seconds, final))
        return naive, snapshots

    def _warm_up(self, content: np.ndarray, style: np.ndarray, params: StyleParams) -> None:
        """A couple of naive iterations and one engine step per pyramid scale, so that kernel
        selection and first-use allocations at every shape fall outside the clock."""
        self._run_naive(content, style, WARMUP_ITERATIONS)
        self.engine.stylize(content, [style], replace(params, initial_iterations=1, iterations=1))

    def _forget_targets(self) -> None:
        """Time a first job with these images, as the naive's run is: the engine may keep the
        targets of earlier jobs (the warm-up's) and would then skip computing them."""
        cache = getattr(self.engine, "targets", None)
        if cache is not None and hasattr(cache, "clear"):
            cache.clear()

    def _row(
        self,
        content: np.ndarray,
        naive_run: tuple[NaiveRun, list[Snapshot]],
        engine: EngineRun,
        step_times: tuple[float, ...],
        monitors: tuple[ArmMonitor, ArmMonitor],
    ) -> BenchRow:
        (naive, naive_snapshots), (naive_monitor, engine_monitor) = naive_run, monitors
        height, width = content.shape[:2]
        foreign = max(naive_monitor.foreign_cpu, engine_monitor.foreign_cpu)
        if foreign > FOREIGN_CPU_WARNING:
            log.warning(
                "%d px: other processes took %.0f%% of the CPUs during an arm: the "
                "times are unreliable",
                max(width, height),
                100 * foreign,
            )
        target = naive_snapshots[-1].loss
        naive_reached = next(s for s in naive_snapshots if s.loss <= target)
        reached = engine.reached
        last = reached or (engine.snapshots[-1] if engine.snapshots else None)
        return BenchRow(
            size=max(width, height),
            width=width,
            height=height,
            device=str(self.config.device),
            naive_arch=self.config.naive_arch,
            naive_iterations=naive.iterations,
            engine_preset=self.config.preset,
            engine_precision=self.config.engine_precision,
            ms_per_iter=1000 * sum(step_times) / len(step_times),
            naive_ms_per_iter=1000 * naive.loop_seconds / max(naive.iterations, 1),
            seconds_to_naive_loss=reached.seconds if reached else None,
            naive_seconds=naive_reached.seconds,
            speedup=naive_reached.seconds / reached.seconds if reached else None,
            peak_mem_mb=engine_monitor.peak_bytes / MIB,
            naive_peak_mem_mb=naive_monitor.peak_bytes / MIB,
            start_loss=naive_snapshots[0].loss,
            naive_loss=target,
            naive_best_loss=min(s.loss for s in naive_snapshots),
            naive_iterations_to_naive_loss=naive_reached.step,
            naive_run_seconds=naive.seconds,
            engine_loss=last.loss if last else math.nan,
            engine_steps_to_naive_loss=reached.step if reached else None,
            engine_steps=engine.steps,
            engine_seconds=engine.seconds,
            foreign_cpu=foreign,
        )


def run_benchmark(config: BenchConfig, images: BenchImages) -> list[BenchRow]:
    """Measure every size in `config`, in order, in this process."""
    if config.naive_iterations < 1:
        raise InvalidInputError("the naive run needs at least 1 iteration")
    bench = Bench(config, images)
    return [bench.measure(size) for size in config.sizes]


# --- output ----------------------------------------------------------------------------------

TABLE_COLUMNS = (
    # (heading, how to show a row's value)
    ("size", lambda r: f"{r.width}x{r.height}"),
    ("engine ms/iter", lambda r: f"{r.ms_per_iter:.0f}"),
    ("naive ms/iter", lambda r: f"{r.naive_ms_per_iter:.0f}"),
    ("engine s to naive loss", lambda r: _maybe(r.seconds_to_naive_loss, "{:.1f}", "not reached")),
    ("naive s to its loss", lambda r: f"{r.naive_seconds:.1f}"),
    ("speedup", lambda r: _maybe(r.speedup, "{:.2f}x", "-")),
    ("engine peak MiB", lambda r: f"{r.peak_mem_mb:.0f}"),
    ("naive peak MiB", lambda r: f"{r.naive_peak_mem_mb:.0f}"),
)


def _maybe(value: float | None, fmt: str, missing: str) -> str:
    return missing if value is None else fmt.format(value)


def format_table(rows: list[BenchRow], config: BenchConfig) -> str:
    """A Markdown table of the rows under a line saying what was compared."""
    threads = f", {torch.get_num_threads()} threads" if config.device.type == "cpu" else ""
    graphs = ""
    if config.device.type == "cuda":
        graphs = ", CUDA graphs" if config.engine_cuda_graphs else ", eager (no CUDA graphs)"
    lines = [
        f"device {config.device}{threads}; weights {config.weights}; naive: "
        f"{config.naive_arch.upper()}, tutorial-style, {config.naive_iterations} L-BFGS "
        f"iterations; engine: VGG16, preset {config.preset}, precision "
        f"{config.engine_precision}{graphs}",
        "| " + " | ".join(heading for heading, _ in TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    lines += ["| " + " | ".join(show(row) for _, show in TABLE_COLUMNS) + " |" for row in rows]
    lines.append(
        "losses (reference, VGG16): "
        + "; ".join(
            f"{r.size}: start {r.start_loss:.4g}, naive {r.naive_loss:.4g} (best "
            f"{r.naive_best_loss:.4g}, reached at iteration "
            f"{r.naive_iterations_to_naive_loss}), engine {r.engine_loss:.4g} after "
            f"{r.engine_steps} steps"
            for r in rows
        )
    )
    return "\n".join(lines)


def format_json(rows: list[BenchRow]) -> str:
    """A JSON array with one object per size (None becomes null)."""
    return json.dumps([asdict(row) for row in rows], indent=2)
