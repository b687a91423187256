"""A job's time before it starts, from what the engine measured on earlier jobs: the seconds a
step takes per pixel it evaluates, and how much of its planned work a job does before its
scales stop improving (the presets' tolerance ends most scales early)."""

from __future__ import annotations

# Steps at a scale that make a speed worth keeping: the first step of a scale carries its
# set-up (the optimiser's buffers, on CUDA the graph capture).
MIN_STEPS_TO_MEASURE = 3


class JobTimer:
    """Seconds per evaluated pixel of a step, from the largest scale measured (small ones are
    bound by fixed costs per step, and would over-estimate a large job), and the share of its
    planned work the last job did."""

    def __init__(self) -> None:
        self.seconds_per_pixel: float | None = None
        self.measured_pixels = 0.0
        self.share_done = 1.0  # until a job has ended: the plan's every step

    def record_scale(self, pixels: float, steps: int, seconds: float) -> None:
        """A scale that evaluated `pixels` per step ran `steps` steps in `seconds`."""
        if steps < MIN_STEPS_TO_MEASURE or pixels < 0.5 * self.measured_pixels:
            return
        self.seconds_per_pixel = seconds / steps / pixels
        self.measured_pixels = max(self.measured_pixels, pixels)

    def record_job(self, work_done: float, work_planned: float) -> None:
        """A job that was not cancelled did `work_done` of `work_planned` (in evaluated pixels)."""
        if work_planned > 0:
            self.share_done = min(1.0, work_done / work_planned)

    def estimate(self, work_planned: float) -> float | None:
        """Seconds a job of `work_planned` evaluated pixels should take; None before any
        measurement."""
        if self.seconds_per_pixel is None:
            return None
        return work_planned * self.share_done * self.seconds_per_pixel
