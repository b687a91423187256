"""`python -m measure.regions` (from the repository root): a style per region, judged by its
look.

One content, two styles and a mask (white: the first style's region; the rest: the second's).
Three jobs at one processing size: both styles by region (`regions`); each style over the whole
image, cut together with the mask (`cut`, what stylising twice and masking gives); the first
style in its region and no style in the rest (`one region`). Each region's look is measured
against both styles (look.py, inside the region), the step in colour across the mask's edge
against the step between neighbours elsewhere (a seam shows as a ratio well above 1), and the
content distance of the part no style covers. Use trained weights (--weights PATH).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from neural_style_daemon.bench.inputs import SHARED_IMAGES, at_size
from neural_style_daemon.bench.look import LookMeter
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.stylize import StyleEngine
from neural_style_daemon.imageio import load_image

DEFAULT_CONTENT = SHARED_IMAGES / "content/chelsea.png"
DEFAULT_STYLES = (SHARED_IMAGES / "style/starry_night.jpg", SHARED_IMAGES / "style/the_scream.jpg")


def seam_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """The mean colour step between neighbouring pixels on either side of the mask's edge (at
    half), over the mean step between neighbours elsewhere: about 1 where the edge does not
    show."""
    pixels = image[..., :3].astype(np.float64)
    inside = mask >= 128
    steps = [np.abs(np.diff(pixels, axis=axis)).sum(-1) for axis in (0, 1)]
    edges = [inside[1:] != inside[:-1], inside[:, 1:] != inside[:, :-1]]
    across = np.concatenate([step[edge] for step, edge in zip(steps, edges, strict=True)])
    rest = np.concatenate([step[~edge] for step, edge in zip(steps, edges, strict=True)])
    if across.size == 0:
        raise ValueError("the mask has no edge")
    return float(across.mean() / rest.mean())


@dataclass(frozen=True)
class RegionLooks:
    """One result's style distances inside each region to each style, its seam ratio, and the
    content distance outside the first region."""

    first_region_to_first_style: float
    first_region_to_second_style: float
    rest_to_second_style: float
    rest_to_first_style: float
    seam: float
    rest_content: float


def judge(result: np.ndarray, first: LookMeter, second: LookMeter, mask: np.ndarray) -> RegionLooks:
    rest = 255 - mask
    return RegionLooks(
        first_region_to_first_style=first.measure(result, mask).style,
        first_region_to_second_style=second.measure(result, mask).style,
        rest_to_second_style=second.measure(result, rest).style,
        rest_to_first_style=first.measure(result, rest).style,
        seam=seam_ratio(result, mask),
        rest_content=first.measure(result, rest).content,
    )


def run(
    engine: StyleEngine,
    content: np.ndarray,
    styles: tuple[np.ndarray, np.ndarray],
    mask: np.ndarray,
    params: StyleParams,
) -> tuple[dict[str, RegionLooks], dict[str, np.ndarray]]:
    """The three jobs on `content` (at its size) and their looks, and the images by name."""
    rest = 255 - mask
    first, second = (LookMeter(engine.model, content, [style]) for style in styles)
    images = {
        "regions": engine.stylize(content, list(styles), params, style_masks=[mask, rest]).image,
        "first style whole": engine.stylize(content, [styles[0]], params).image,
        "second style whole": engine.stylize(content, [styles[1]], params).image,
        "one region": engine.stylize(content, [styles[0]], params, style_masks=[mask]).image,
    }
    inside = (mask >= 128)[..., None]
    images["cut"] = np.where(inside, images["first style whole"], images["second style whole"])
    names = ("regions", "cut", "one region", "first style whole")
    return {name: judge(images[name], first, second, mask) for name in names}, images


def _rgb(path: Path) -> np.ndarray:
    return load_image(path, str(path))[..., :3]


def _mask(path: Path | None, width: int, height: int) -> np.ndarray:
    if path is None:  # the left half
        mask = np.zeros((height, width), np.uint8)
        mask[:, : width // 2] = 255
        return mask
    grey = Image.open(path).convert("L").resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(grey)


def _sheet(images: list[np.ndarray]) -> Image.Image:
    height = images[0].shape[0]
    row = np.concatenate(
        [np.dstack([i] * 3) if i.ndim == 2 else i[..., :3] for i in images], axis=1
    )
    return Image.fromarray(row[:height])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m measure.regions")
    parser.add_argument("--weights", required=True, help="a trained VGG16 (a path), or random")
    parser.add_argument("--content", type=Path, default=DEFAULT_CONTENT)
    parser.add_argument("--styles", type=Path, nargs=2, default=DEFAULT_STYLES)
    parser.add_argument("--mask", type=Path, help="grey image: white is the first style's")
    parser.add_argument("--size", type=int, default=384, help="processing long side (384)")
    parser.add_argument("--preset", default="normal")
    parser.add_argument("--out", type=Path, help="a folder for the images and looks.json")
    args = parser.parse_args(argv)
    content = at_size(_rgb(args.content), args.size)
    styles = (_rgb(args.styles[0]), _rgb(args.styles[1]))
    mask = _mask(args.mask, content.shape[1], content.shape[0])
    engine = StyleEngine(args.weights, device="auto")
    looks, images = run(engine, content, styles, mask, StyleParams(preset=args.preset))
    print(f"{args.content.name} {content.shape[1]}x{content.shape[0]}, {args.preset}")
    print(
        "| result | region: own style | region: other | rest: own | rest: other | seam "
        "| rest: content |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, look in looks.items():
        print(
            f"| {name} | {look.first_region_to_first_style:.3f} "
            f"| {look.first_region_to_second_style:.3f} | {look.rest_to_second_style:.3f} "
            f"| {look.rest_to_first_style:.3f} | {look.seam:.2f} | {look.rest_content:.3f} |"
        )
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, image in images.items():
            Image.fromarray(image[..., :3]).save(args.out / f"{name.replace(' ', '-')}.png")
        sheet = [content, mask, images["regions"], images["cut"], images["one region"]]
        _sheet(sheet).save(args.out / "sheet.png")
        looks_json = {name: asdict(look) for name, look in looks.items()}
        (args.out / "looks.json").write_text(json.dumps(looks_json, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
