"""`--style-masks` and `--style-source-masks` of `neural-style stylize` (Gatys et al. 2017's
spatial control): the option's syntax, and the mask files read and checked against the content
and the style images before any work starts. Shared by the job in this process (cli.py) and
the job on a daemon (remote.py), so no torch here; and the parser imports this module, so
numpy and Pillow are imported only once masks are read (`status` and the broker parse without
them).

Each option lists one file per style image, in order, `-` for none; a list of another length
is an error rather than a guess at which style a mask belongs to.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

MaskPaths = tuple[Path | None, ...]
Size = tuple[int, int]  # width, height
NO_MASK = "-"
MASK_OPTIONS = ("--style-masks", "--style-source-masks")


def join_mask_values(argv: Sequence[str]) -> list[str]:
    """`argv` with each mask list that starts with `-` joined to its option (`--style-masks
    -,b.png` becomes `--style-masks=-,b.png`): argparse would take the list for an option and
    say the option has no value. No option has a comma in its name, so nothing else changes."""
    joined: list[str] = []
    for word in argv:
        if joined and joined[-1] in MASK_OPTIONS and word.startswith("-") and "," in word:
            joined[-1] = f"{joined[-1]}={word}"
        else:
            joined.append(word)
    return joined


def mask_list(text: str) -> MaskPaths:
    """The argparse type of both options: file names separated by commas, `-` for none."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"an empty entry in {text!r}: give one file per style image, {NO_MASK} for none"
        )
    return tuple(None if part == NO_MASK else Path(part) for part in parts)


@dataclass(frozen=True)
class JobMasks:
    """The masks of a job as the engine takes them: None, or one entry per style (None, or
    an H x W uint8 array)."""

    regions: list[np.ndarray | None] | None = None  # the content's size
    sources: list[np.ndarray | None] | None = None  # each its style image's size


def load_job_masks(
    args: argparse.Namespace, content_size: Size, style_size: Callable[[int], Size]
) -> JobMasks:
    """The masks `args` name, read and checked: InvalidInputError naming the option or the
    file for a miscount, a file that cannot be read, a wrong size or an empty source mask.
    `style_size(i)` is the size of style image i (0-based) as the engine will see it; it is
    asked only for the styles that have a source mask."""
    styles: Sequence[Path] = args.styles
    regions = _load_each(args.style_masks, "--style-masks", len(styles), "style mask")
    sources = _load_each(
        args.style_source_masks, "--style-source-masks", len(styles), "style source mask"
    )
    for index, path, mask in _given(args.style_masks, regions):
        _check_size(mask, content_size, f"style mask {index} ({path})", "the content")
    for index, path, mask in _given(args.style_source_masks, sources):
        what = f"style source mask {index} ({path})"
        style = f"style image {index} ({styles[index - 1]})"
        _check_size(mask, style_size(index - 1), what, style)
        if not mask.any():
            raise InvalidInputError(
                f"{what} is black everywhere: it leaves nothing of {style} to learn from"
            )
    return JobMasks(regions, sources)


def decoded_style_size(path: Path, index: int) -> Size:
    """A style image's size as the daemon will decode it (its EXIF orientation applied)."""
    from .imageio import load_image

    height, width = load_image(path, f"style image {index + 1}").shape[:2]
    return width, height


def _load_each(
    paths: MaskPaths | None, option: str, styles: int, what: str
) -> list[np.ndarray | None] | None:
    if paths is None or all(path is None for path in paths):
        return None
    if len(paths) != styles:
        raise InvalidInputError(
            f"{option} names {len(paths)} file(s) for {styles} style image(s): give one per "
            f"style image, in order, {NO_MASK} for none"
        )
    from .imageio import load_mask

    return [
        None if path is None else load_mask(path, f"{what} {index}")
        for index, path in enumerate(paths, 1)
    ]


def _given(
    paths: MaskPaths | None, masks: list[np.ndarray | None] | None
) -> list[tuple[int, Path, np.ndarray]]:
    """The masks given, each with its style's number (from 1) and its file."""
    if paths is None or masks is None:
        return []
    return [
        (index, path, mask)
        for index, (path, mask) in enumerate(zip(paths, masks, strict=True), 1)
        if path is not None and mask is not None
    ]


def _check_size(mask: np.ndarray, size: Size, what: str, other: str) -> None:
    height, width = mask.shape
    if (width, height) != size:
        raise InvalidInputError(f"{what} is {width}x{height}; {other} is {size[0]}x{size[1]}")
