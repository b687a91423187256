"""`stylize --save-every N`: the image so far written every N steps beside the output, as
jcjohnson/neural-style's `-save_iter` does, so that a long run can be watched (and stopped once
it looks right) without waiting for the end. Imports no torch."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import InvalidInputError
from .imageio import save_image

log = logging.getLogger(__name__)


def snapshot_interval(text: str | None) -> int:
    """The steps between snapshots that `--save-every` asks for; 0 without it. Parsed here,
    not by argparse, so that a bad value is one line like every other bad input."""
    if text is None:
        return 0
    try:
        steps = int(text)
    except ValueError:
        steps = 0
    if steps < 1:
        raise InvalidInputError(
            f"--save-every takes a positive whole number of steps, not {text!r}"
        )
    return steps


def snapshot_path(output: Path, steps: int) -> Path:
    """Where the snapshot after `steps` steps of the whole job goes: `out.png` -> `out-50.png`.
    The steps count across the pyramid's scales, so each name belongs to one moment of the
    job."""
    return output.with_name(f"{output.stem}-{steps}{output.suffix}")


def write_snapshot(output: Path, steps: int, image: np.ndarray) -> None:
    """The engine's `on_snapshot`, given the output path: the snapshot written atomically (a
    file that exists is whole), in the output's format."""
    path = snapshot_path(output, steps)
    save_image(image, path)
    log.info("wrote %s", path)
