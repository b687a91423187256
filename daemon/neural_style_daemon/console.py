"""What the command's modules share at the console: exit codes, the progress bar, Ctrl-C as a
cooperative cancel, and the model options of `stylize`, `serve` and `start`. A leaf: it imports
nothing of this package, so every command module can import it."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from neural_style_protocol.durations import format_duration

EXIT_NOT_RUNNING = 1  # `status` with no daemon
EXIT_USAGE = 2  # a domain error, said in one line
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--device and --weights: the engine's, in this process or in the daemon's worker."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--weights",
        default="imagenet",
        metavar="imagenet|random|PATH",
        help="VGG16 weights: torchvision's ImageNet checkpoint (default), seeded "
        "random ones (tests only: no artistic result), or a local file",
    )


class ProgressBar:
    """A tqdm bar over the job's pixel-weighted work (a sequence's: over its frames), with
    frame, scale, iteration and loss."""

    def __init__(self, disabled: bool) -> None:
        self.disabled = disabled
        self.bar: Any = None  # tqdm ships no type hints

    def __enter__(self) -> ProgressBar:
        if not self.disabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=1000,
                unit="‰",
                file=sys.stderr,
                dynamic_ncols=True,
                bar_format="{desc} {bar} {percentage:3.0f}% [{elapsed}<{remaining}]",
            )
        return self

    def update(self, progress: Any) -> None:
        """From the engine's Progress, or the daemon's (which has no size, maybe no loss)."""
        if self.bar is None:
            return
        size = getattr(progress, "size", None)
        loss = progress.losses.get("total")
        # Before the first step, the estimate from earlier jobs (a warm daemon's): the bar's
        # own time left starts with the first step.
        estimate = progress.eta if progress.iteration == 0 else None
        frames = getattr(progress, "frames", 0)  # a sequence's (engine/frames.py)
        self.bar.set_description_str(
            (f"frame {progress.frame}/{frames} " if frames else "")
            + f"scale {progress.scale}/{progress.scales}"
            + (f" {size[0]}x{size[1]}" if size else "")
            + f" step {progress.iteration}/{progress.iterations}"
            + (f" tile {progress.tile}/{progress.tiles}" if progress.tiles else "")
            + (f" loss {loss:.4g}" if loss is not None else "")
            + (f" (about {format_duration(estimate)} in all)" if estimate else ""),
            refresh=estimate is not None,
        )
        self.bar.update(round(progress.work_done * 1000) - self.bar.n)

    def __exit__(self, error_type: type | None, *exc: object) -> None:
        if self.bar is not None:
            # A job that failed before its first step (refused for memory, say) leaves no empty
            # bar above the error's line.
            self.bar.leave = not (error_type is not None and self.bar.n == 0)
            self.bar.close()


class CancelOnInterrupt:
    """The first Ctrl-C stops the optimisation after the current step and keeps the image
    (the engine's cooperative cancel); a second one aborts at once."""

    def __init__(self) -> None:
        self.interrupted = False

    def requested(self) -> bool:
        return self.interrupted

    def _handle(self, signum: int, frame: object) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True

    def __enter__(self) -> CancelOnInterrupt:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)
