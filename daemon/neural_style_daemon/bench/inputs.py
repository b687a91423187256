"""The benchmark's images: the shared sample pictures when they sit beside the repository, files
the user names, or seeded synthetic ones; prepared once per size so that both arms and the
reference loss see exactly the same pixels."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..engine.pyramid import scaled_size
from ..engine.stylize import resize, to_array, to_tensor
from ..imageio import load_image

log = logging.getLogger(__name__)

# ../shared/images beside the repository root (daemon/neural_style_daemon/bench/ is three
# levels down); absent in an installed wheel, where the synthetic images take over.
SHARED_IMAGES = Path(__file__).resolve().parents[3].parent / "shared" / "images"
DEFAULT_CONTENT = "content/astronaut.png"
DEFAULT_STYLE = "style/starry_night.jpg"


@dataclass(frozen=True)
class BenchImages:
    """Content and style as uint8 H x W x 3 arrays at their original size, and where they
    came from (a path, or "synthetic")."""

    content: np.ndarray
    style: np.ndarray
    content_source: str
    style_source: str


def load_bench_images(
    content: Path | None, style: Path | None, *, seed: int = 0, shared: Path = SHARED_IMAGES
) -> BenchImages:
    """The images named, else the shared samples if present, else seeded synthetic ones."""
    content_path = content or _shared(shared, DEFAULT_CONTENT)
    style_path = style or _shared(shared, DEFAULT_STYLE)
    if content_path is None or style_path is None:
        log.info("no sample images at %s: using seeded synthetic images", shared)
    return BenchImages(
        content=_rgb(load_image(content_path, "content image"))
        if content_path
        else synthetic_content(512, 512, seed=seed),
        style=_rgb(load_image(style_path, "style image"))
        if style_path
        else synthetic_style(512, 512, seed=seed + 1),
        content_source=str(content_path or "synthetic"),
        style_source=str(style_path or "synthetic"),
    )


def _shared(folder: Path, name: str) -> Path | None:
    path = folder / name
    return path if path.is_file() else None


def _rgb(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[..., :3])


def synthetic_content(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """Smooth seeded colour blobs with a few hard edges: something with structure at every
    layer's scale, as a photograph has."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (3, 6, 6)).astype(np.float32)
    image = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=(height, width), mode="bicubic", align_corners=False
    )[0].clamp(0, 1)
    for _ in range(4):  # rectangles: edges for the deeper layers to see
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        colour = torch.from_numpy(rng.uniform(0, 1, (3, 1, 1)).astype(np.float32))
        image[:, y0 : y0 + height // 4, x0 : x0 + width // 4] = colour
    return to_array(image)


def synthetic_style(width: int, height: int, *, seed: int = 1) -> np.ndarray:
    """Seeded diagonal stripes in two strong colours with noise: a texture unlike the content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    stripe = np.sin((x + 0.5 * y) * 2 * np.pi / 9.0) > 0
    rgb = np.where(stripe[..., None], (30, 50, 220), (235, 215, 40)).astype(np.float64)
    rgb += rng.normal(0, 18, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def at_size(image: np.ndarray, long_side: int, *, enlarge: bool = True) -> np.ndarray:
    """`image` with its long side at `long_side` (aspect kept, antialiased bicubic, as the
    engine resizes), rounded to uint8. With `enlarge` False it never grows, like the engine's
    style images (style_upscale off)."""
    height, width = image.shape[:2]
    if not enlarge:
        long_side = min(long_side, max(width, height))
    size = scaled_size(width, height, long_side)
    if size == (width, height):
        return image
    return to_array(resize(to_tensor(image, torch.device("cpu")), size))
