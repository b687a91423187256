"""How a result looks, measured by statistics rather than pixels.

Two runs that end with the same look can differ in every pixel: the optimisation amplifies
rounding, so strokes land elsewhere while the statistics the paper matches stay put. A look is
therefore judged by what the objective is about, on a trained network in fp32:

- the **style distance**: at each of Gatys et al.'s style layers (relu1_1 ... relu5_1), the
  Frobenius distance between the result's Gram matrix and the style's, relative to the
  style's; their root mean square over the layers, so that it is the square root of the style
  term the engine minimises (with equal layer weights). The style is seen at the result's
  size. The per-layer distances come with it: the shallow layers' fine colour statistics keep
  improving long after the look has settled.
- the **content distance**: the distance between the result's relu4_2 features and the
  content's, relative to the content's.
- both **inside a region** (a mask): the Gram matrices of the masked features over the mask's
  mass (the engine's guided Gram), and the masked features' distance.
- the **colour layout**: CIEDE2000 between two images after a Gaussian blur that hides the
  strokes (scikit-image's `deltaE_ciede2000`), and without the blur.
- the **stroke size**: the power-weighted mean spatial frequency of what the style added to the
  photo's luminance; larger strokes, lower frequency.

A look is measured at the processing size: a result enlarged to the photo's size is blurred,
which moves both distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.losses import gram_matrix, guided_gram, masked
from ..engine.params import STYLE_LAYER_SETS
from ..engine.pyramid import scaled_size
from ..engine.regions import layer_masks, mask_tensor
from ..engine.stylize import resize, to_tensor
from ..engine.vgg import VGGFeatures

STYLE_LAYERS = STYLE_LAYER_SETS["default"]
CONTENT_LAYER = "relu4_2"
# Sigma of the blur before the colour layout's CIEDE2000, in pixels at the processing size: it
# hides strokes a few pixels wide and keeps where the colours sit.
LAYOUT_BLUR_SIGMA = 4.0


@dataclass(frozen=True)
class Look:
    """A result's distances to its style and its content (0 is a perfect match)."""

    style: float
    content: float
    style_by_layer: dict[str, float]

    def gap(self, other: Look) -> float:
        """The larger relative difference of the two distances from `other`'s, e.g. 0.02 when
        one is 2 % off: how far this look is from `other`."""
        return max(
            abs(self.style - other.style) / max(other.style, 1e-12),
            abs(self.content - other.content) / max(other.content, 1e-12),
        )


class LookMeter:
    """Measures looks against one content and its (blended) style on a trained network. The
    images are uint8 H x W x 3 arrays; results are measured at their own size, the targets at
    that size too (computed once per size)."""

    def __init__(
        self,
        model: VGGFeatures,
        content: np.ndarray,
        styles: Sequence[np.ndarray],
        blend: Sequence[float] | None = None,
    ) -> None:
        self.model = model
        self.device = model.device
        self.content = to_tensor(content, self.device)
        self.styles = [to_tensor(style, self.device) for style in styles]
        weights = list(blend or [1.0] * len(styles))
        self.blend = [w / sum(weights) for w in weights]
        self._targets: dict[tuple[int, int], tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    @torch.no_grad()
    def _features(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        # fp32 whatever the engine runs in: the measure must not depend on the device's numerics.
        with torch.autocast(self.device.type, enabled=False):
            return self.model(image[None].float(), (CONTENT_LAYER, *STYLE_LAYERS))

    def _targets_at(self, size: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if size not in self._targets:
            content = self._features(resize(self.content, size))[CONTENT_LAYER]
            grams: dict[str, torch.Tensor] = {}
            for style, weight in zip(self.styles, self.blend, strict=True):
                height, width = style.shape[-2:]
                features = self._features(resize(style, scaled_size(width, height, max(size))))
                for name in STYLE_LAYERS:
                    grams[name] = grams.get(name, 0) + weight * gram_matrix(features[name])
            self._targets[size] = (content, grams)
        return self._targets[size]

    def measure(self, result: np.ndarray | torch.Tensor, region: np.ndarray | None = None) -> Look:
        """The look of `result` (uint8 H x W x 3, or a 3 x H x W tensor in [0, 1]); inside
        `region` (an H x W uint8 mask) where given: the region's guided Gram matrices against
        the style's, and the content distance of the masked features."""
        image = to_tensor(result, self.device) if isinstance(result, np.ndarray) else result
        image = image.to(self.device, torch.float32).clamp(0, 1)
        size = (image.shape[-1], image.shape[-2])
        content_target, style_targets = self._targets_at(size)
        features = self._features(image)
        if region is None:
            grams = {name: gram_matrix(features[name]) for name in style_targets}
            content, content_target_inside = features[CONTENT_LAYER], content_target
        else:
            mask = mask_tensor(region, self.device)
            masks = layer_masks([mask], size, (*STYLE_LAYERS, CONTENT_LAYER), self.device)
            grams = {name: guided_gram(features[name], masks[name]) for name in style_targets}
            content = masked(features[CONTENT_LAYER], masks[CONTENT_LAYER])
            content_target_inside = masked(content_target, masks[CONTENT_LAYER])
        by_layer = {
            name: _relative_distance(grams[name], target) for name, target in style_targets.items()
        }
        return Look(
            style=float(np.sqrt(np.mean(np.square(list(by_layer.values()))))),
            content=_relative_distance(content, content_target_inside),
            style_by_layer=by_layer,
        )


def _relative_distance(value: torch.Tensor, target: torch.Tensor) -> float:
    return float((value - target).norm() / target.norm().clamp_min(1e-12))


@dataclass(frozen=True)
class ColourDifference:
    """Mean CIEDE2000 between two images: after the layout blur, and pixel by pixel."""

    layout: float
    pixels: float


def colour_difference(
    first: np.ndarray, second: np.ndarray, *, blur_sigma: float = LAYOUT_BLUR_SIGMA
) -> ColourDifference:
    """CIEDE2000 between two uint8 H x W x 3 images of one size (scikit-image's formula)."""
    from skimage.color import deltaE_ciede2000, rgb2lab
    from skimage.filters import gaussian

    if first.shape[:2] != second.shape[:2]:
        raise ValueError(f"images of different sizes: {first.shape} and {second.shape}")
    a, b = (np.asarray(image[..., :3], dtype=np.float64) / 255 for image in (first, second))
    plain = deltaE_ciede2000(rgb2lab(a), rgb2lab(b))
    blurred = [gaussian(image, sigma=blur_sigma, channel_axis=-1) for image in (a, b)]
    layout = deltaE_ciede2000(rgb2lab(blurred[0]), rgb2lab(blurred[1]))
    return ColourDifference(layout=float(layout.mean()), pixels=float(plain.mean()))


def stroke_frequency(result: np.ndarray, content: np.ndarray) -> float:
    """The median spatial frequency (cycles per pixel, 0 to about 0.7) of what the stylisation
    added to the content's luminance, by power: half of it lies below. Lower for larger
    strokes; the median is not pulled up by the fine texture that every result carries, as the
    power-weighted mean is. Both images are uint8 H x W x 3 of one size."""
    luma = np.array([0.299, 0.587, 0.114])
    added = (result[..., :3] @ luma - content[..., :3] @ luma) / 255
    added = added - added.mean()
    height, width = added.shape
    window = np.outer(np.hanning(height), np.hanning(width))  # no edges from the borders
    power = np.abs(np.fft.rfft2(added * window)) ** 2
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.broadcast_to(np.hypot(fx, fy), power.shape).ravel()
    power[0, 0] = 0.0
    order = np.argsort(radius, kind="stable")
    below = np.cumsum(power.ravel()[order])
    if below[-1] <= 0:
        return 0.0
    return float(radius[order][np.searchsorted(below, below[-1] / 2)])
