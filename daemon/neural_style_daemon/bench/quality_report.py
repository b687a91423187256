"""What `neural-style bench --suite quality` writes: a Markdown table, the JSON, and contact
sheets (content, style, each run, labelled) as PNG."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..imageio import save_image
from .quality import REFERENCE, PairResult, QualityRun

TILE = 256  # the long side of each picture on a contact sheet
LABEL_LINES = 4
FONT_SIZE = 13


def format_table(results: list[PairResult]) -> str:
    """One Markdown row per run; the gap and the colour layout are against the reference."""
    lines = [
        "| pair | size | run | seconds | steps | style distance | content distance | "
        "gap to reference | layout ΔE00 | pixel ΔE00 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        start = result.content_look
        lines.append(
            f"| {result.pair.name} | {result.size} | (the photo) | | | {start.style:.4f} | "
            f"{start.content:.4f} | | | |"
        )
        for run in result.runs:
            gap = "" if run.gap is None else f"{100 * run.gap:.1f} %"
            layout = pixels = ""
            if run.to_reference is not None:
                layout = f"{run.to_reference.layout:.2f}"
                pixels = f"{run.to_reference.pixels:.2f}"
            lines.append(
                f"| {run.pair} | {run.size} | {run.label} | {run.seconds:.1f} | {run.steps} | "
                f"{run.look.style:.4f} | {run.look.content:.4f} | {gap} | {layout} | {pixels} |"
            )
    return "\n".join(lines)


def to_json(results: list[PairResult], meta: dict[str, object]) -> str:
    def run_dict(run: QualityRun) -> dict[str, object]:
        values = asdict(run)
        values.pop("image")
        return values

    return json.dumps(
        {
            "meta": meta,
            "pairs": [
                {
                    "content": str(r.pair.content),
                    "style": str(r.pair.style),
                    "size": r.size,
                    "photo_look": asdict(r.content_look),
                    "runs": [run_dict(run) for run in r.runs],
                }
                for r in results
            ],
        },
        indent=2,
    )


def contact_sheet(results: list[PairResult]) -> np.ndarray:
    """One row per pair and size: the content, the style, then each run in the order run,
    with the reference last; each picture labelled under it."""
    font = ImageFont.load_default(size=FONT_SIZE)
    line_height = FONT_SIZE + 3
    label_height = LABEL_LINES * line_height + 6
    rows = []
    for result in results:
        runs = [r for r in result.runs if r.label != REFERENCE]
        runs += [r for r in result.runs if r.label == REFERENCE]
        cells = [(result.content, _photo_label(result)), (result.style, ["style", ""])]
        cells += [(run.image, _run_label(run)) for run in runs]
        rows.append(cells)
    columns = max(len(cells) for cells in rows)
    sheet = Image.new(
        "RGB", (columns * (TILE + 8) + 8, len(rows) * (TILE + label_height + 8)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for row, cells in enumerate(rows):
        top = 8 + row * (TILE + label_height + 8)
        for column, (image, label) in enumerate(cells):
            left = 8 + column * (TILE + 8)
            tile = _tile(image)
            sheet.paste(tile, (left + (TILE - tile.width) // 2, top + (TILE - tile.height) // 2))
            for line, text in enumerate(label):
                draw.text(
                    (left, top + TILE + 4 + line * line_height), text, fill="black", font=font
                )
    return np.asarray(sheet)


def _tile(image: np.ndarray) -> Image.Image:
    """The picture with its long side at TILE pixels, enlarged or reduced."""
    picture = Image.fromarray(image[..., :3])
    factor = TILE / max(picture.size)
    size = (max(1, round(picture.width * factor)), max(1, round(picture.height * factor)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def _photo_label(result: PairResult) -> list[str]:
    return [
        result.pair.name,
        f"the photo, {result.size} px",
        f"style {result.content_look.style:.3f}",
    ]


def _run_label(run: QualityRun) -> list[str]:
    lines = [
        run.label,
        f"{run.seconds:.1f} s, {run.steps} steps",
        f"style {run.look.style:.3f} content {run.look.content:.3f}",
    ]
    if run.gap is not None and run.to_reference is not None:
        lines.append(f"gap {100 * run.gap:.1f} %, layout dE00 {run.to_reference.layout:.1f}")
    return lines


def write_outputs(out: Path, results: list[PairResult], meta: dict[str, object]) -> list[Path]:
    """quality.md, quality.json and contact-sheet.png in `out`, and each result at its
    processing size in out/images; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    table, blob = out / "quality.md", out / "quality.json"
    table.write_text(format_table(results) + "\n")
    blob.write_text(to_json(results, meta) + "\n")
    sheet = out / "contact-sheet.png"
    save_image(contact_sheet(results), sheet)
    written = [table, blob, sheet]
    (out / "images").mkdir(exist_ok=True)
    for result in results:
        for run in result.runs:
            name = f"{result.pair.content.stem}-{result.pair.style.stem}-{result.size}"
            path = out / "images" / f"{name}-{run.label.replace(' ', '')}.png"
            save_image(run.image, path)
            written.append(path)
    return written
