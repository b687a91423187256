"""The objective of a scale evaluated tile by tile, so that memory is bounded by the tile and not
the image, with the same loss and gradient as the untiled evaluation.

Each tile is a core with a halo around it. The halo holds the receptive field of every feature
at the core's positions, so those features are the untiled network's; each loss is summed over
core positions only, and each tile's image gradient (halo included: a core feature depends on
pixels there) is added into the whole image's. The style term is the whole image's Gram matrix:
a first pass without gradients sums it over the cores, a second pass back-propagates each tile
with the whole image's Gram gradient. So style statistics are global and a tile's border has
nothing to show as a seam.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from .losses import mask_mass, masked, total_variation
from .vgg import VGGFeatures, fast_math

# Tile corners on this grid keep every layer's pooling grid the untiled one (VGG's four pools
# before block 5 halve the grid four times).
ALIGN = 16
# relu5_1's receptive field is 132 px wide: 66 px on each side of a feature, rounded up to ALIGN.
DEFAULT_HALO = 80


_EVERY = slice(None)


def layer_stride(name: str) -> int:
    """How many image pixels one feature position of layer `name` (relu3_1, ...) steps over."""
    return 2 ** (int(name[4]) - 1)


@dataclass(frozen=True)
class Tile:
    """Rows and columns, in image pixels: the core [top, bottom) x [left, right) and the box
    around it that the network sees, [box_top, box_bottom) x [box_left, box_right)."""

    top: int
    bottom: int
    left: int
    right: int
    box_top: int
    box_bottom: int
    box_left: int
    box_right: int

    @property
    def box_pixels(self) -> int:
        return (self.box_bottom - self.box_top) * (self.box_right - self.box_left)

    def core_at(self, stride: int) -> tuple[slice, ...]:
        """Index of the core's feature positions in the box's N x C x h x w features, at a
        layer of `stride`."""
        top, left = self.top - self.box_top, self.left - self.box_left
        bottom, right = self.bottom - self.box_top, self.right - self.box_left
        return (
            _EVERY,
            _EVERY,
            slice(top // stride, bottom // stride),
            slice(left // stride, right // stride),
        )

    def core_in_image_features(self, stride: int) -> tuple[slice, ...]:
        """Index of the core's feature positions in the whole image's features."""
        rows = slice(self.top // stride, self.bottom // stride)
        return _EVERY, _EVERY, rows, slice(self.left // stride, self.right // stride)

    def box(self) -> tuple[slice, ...]:
        """Index of the box in a 1 x 3 x H x W image."""
        rows = slice(self.box_top, self.box_bottom)
        return _EVERY, _EVERY, rows, slice(self.box_left, self.box_right)


def _cuts(length: int, tile: int) -> list[int]:
    """Core boundaries along one side: as many cores as `tile` px need, of nearly equal sizes,
    every inner boundary on the ALIGN grid (so no core is a sliver at the image's end)."""
    count = max(1, math.ceil(length / tile))
    inner = [round(i * length / count / ALIGN) * ALIGN for i in range(1, count)]
    return [0, *sorted({cut for cut in inner if 0 < cut < length}), length]


def plan_tiles(height: int, width: int, tile: int, halo: int = DEFAULT_HALO) -> list[Tile]:
    """Cores of about `tile` px (at least ALIGN) covering the image, each with `halo` px (rounded
    up to ALIGN) around it where the image has them."""
    tile = max(ALIGN, tile)
    halo = math.ceil(max(halo, 0) / ALIGN) * ALIGN
    rows, columns = _cuts(height, tile), _cuts(width, tile)
    return [
        Tile(
            top,
            bottom,
            left,
            right,
            max(0, top - halo),
            min(height, bottom + halo),
            max(0, left - halo),
            min(width, right + halo),
        )
        for top, bottom in itertools.pairwise(rows)
        for left, right in itertools.pairwise(columns)
    ]


def _feature_size(height: int, width: int, stride: int) -> tuple[int, int]:
    return height // stride, width // stride


@torch.no_grad()
def tiled_features(
    model: VGGFeatures, image: torch.Tensor, layers: Iterable[str], tiles: list[Tile]
) -> dict[str, torch.Tensor]:
    """The whole image's features (fp32) at `layers`, assembled from the tiles' cores."""
    layers = tuple(layers)
    height, width = image.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    for tile in tiles:
        with fast_math(model):
            features = model(image[tile.box()], layers)
        for name in layers:
            stride = layer_stride(name)
            core = features[name][tile.core_at(stride)].float()
            if name not in out:
                channels = core.shape[1]
                out[name] = image.new_zeros(
                    (1, channels, *_feature_size(height, width, stride)), dtype=torch.float32
                )
            out[name][tile.core_in_image_features(stride)] = core
    return out


def _core_gram_sum(core: torch.Tensor) -> torch.Tensor:
    """F F^T over a core's positions, in fp32, unnormalised."""
    flat = core.reshape(core.shape[1], -1)
    with torch.autocast(core.device.type, enabled=False):
        return (flat @ flat.T).float()


@torch.no_grad()
def tiled_grams(
    model: VGGFeatures,
    image: torch.Tensor,
    layers: Iterable[str],
    tiles: list[Tile],
    masks: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The whole image's Gram matrices at `layers` (1 x C x C, normalised as
    losses.gram_matrix does), summed over the tiles' cores; with `masks` (a 1 x 1 x h x w mask
    per layer, the whole image's), the guided Gram matrices, as losses.guided_gram."""
    layers = tuple(layers)
    height, width = image.shape[-2:]
    sums: dict[str, torch.Tensor] = {}
    for tile in tiles:
        with fast_math(model):
            features = model(image[tile.box()], layers)
        for name in layers:
            stride = layer_stride(name)
            core = features[name][tile.core_at(stride)]
            if masks is not None:
                core = masked(core, masks[name][tile.core_in_image_features(stride)])
            part = _core_gram_sum(core)
            sums[name] = sums[name] + part if name in sums else part
    grams = _normalised(sums, height, width)
    if masks is not None:
        grams = {
            name: gram * (masks[name][0, 0].numel() / max(mask_mass(masks[name]), 1e-12))
            for name, gram in grams.items()
        }
    return {name: gram[None] for name, gram in grams.items()}


def _normalised(sums: dict[str, torch.Tensor], height: int, width: int) -> dict[str, torch.Tensor]:
    """Summed F F^T (or one per region: R x C x C) over an H x W image's positions, divided by
    C x h x w as losses.gram_matrix does."""
    return {
        name: total
        / (total.shape[-1] * math.prod(_feature_size(height, width, layer_stride(name))))
        for name, total in sums.items()
    }


# A tiled evaluation's cost against an untiled one's over the same pixels: the first pass is
# a forward alone, about a third of a forward and backward.
TILED_PASSES_COST = 4 / 3


def evaluated_pixels(width: int, height: int, tile: int | None) -> float:
    """What one evaluation of a `width` x `height` image costs, in pixels evaluated forward
    and backward: its pixels whole, or in tiles of `tile` their boxes (halos included) over
    both passes."""
    if tile is None or max(width, height) <= tile:
        return float(width * height)
    boxes = sum(t.box_pixels for t in plan_tiles(height, width, tile))
    return boxes * TILED_PASSES_COST


class EvaluationStopped(Exception):
    """Raised out of a tiled evaluation whose `on_tile` asked to stop (a cancel)."""


# After each tile: (pass, tile, tiles), the pass 1 (the Gram matrices) or 2 (the gradient) and
# the tile 1-based; False stops the evaluation (EvaluationStopped).
TileCallback = Callable[[int, int, int], bool]


class TiledEvaluation:
    """One evaluation of `objective` (an optimize.Objective) on a 1 x 3 x H x W image, tile by
    tile: returns the weighted (content, style, total variation) terms, as the untiled
    evaluation's LossTerms hold them, and leaves the gradient in `image.grad`. `on_tile` hears
    of each tile done: a step of a large image takes minutes, and its progress and a cancel
    cannot wait for the step's end."""

    def __init__(
        self,
        objective,
        height: int,
        width: int,
        tile: int,
        halo: int = DEFAULT_HALO,
        on_tile: TileCallback | None = None,
    ):
        self.objective = objective
        self.tiles = plan_tiles(height, width, tile, halo)
        self.size = (height, width)
        self.layers = objective.layers
        self.on_tile = on_tile

    def _tile_done(self, pass_number: int, index: int) -> None:
        if self.on_tile is not None and not self.on_tile(pass_number, index, len(self.tiles)):
            raise EvaluationStopped

    def _positions(self, name: str) -> int:
        return math.prod(_feature_size(*self.size, layer_stride(name)))

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        objective, model = self.objective, self.objective.model
        grams, content_errors = self._first_pass(image)
        # The loss from the whole image's statistics, and its gradient with respect to each
        # Gram matrix: what every tile's backward pass starts from.
        style = image.new_zeros((), dtype=torch.float32)
        gram_gradients: dict[str, torch.Tensor] = {}
        for name, loss in objective.style_losses.items():
            # R x C x C: one Gram per region (R = 1 without masks), each normalised by its mask's
            # mass, its loss weighted by the mask's mean square (losses.StyleLoss).
            difference = grams[name] - loss.target
            layer_weight = objective.style_weight * objective.style_layer_weights[name]
            channels = difference.shape[-1]
            for region, (scale, weight) in enumerate(
                zip(loss.scales, loss.region_weights, strict=True)
            ):
                if weight == 0:
                    difference[region] = 0
                    continue
                style = style + layer_weight * weight * scale * difference[region].square().mean()
                # The region weight and the normalisation by mass cancel in the gradient.
                difference[region] *= (layer_weight * scale * 2 / difference[region].numel()) / (
                    channels * self._positions(name)
                )
            gram_gradients[name] = difference
        content = image.new_zeros((), dtype=torch.float32)
        content_factors: dict[str, float] = {}
        for name, loss in objective.content_losses.items():
            channels = loss.target.shape[1]
            factor = objective.content_weight * loss.scale / (channels * self._positions(name))
            content = content + factor * content_errors[name]
            content_factors[name] = factor

        gradient = torch.zeros_like(image)
        for index, tile in enumerate(self.tiles, start=1):
            crop = image.detach()[tile.box()].clone().requires_grad_(True)
            with fast_math(model):
                features = model(crop, self.layers)
            surrogate = crop.new_zeros((), dtype=torch.float32)
            for name, gram_gradients_by_region in gram_gradients.items():
                stride = layer_stride(name)
                core = features[name][tile.core_at(stride)]
                masks = objective.style_losses[name].masks
                for region, gram_gradient in enumerate(gram_gradients_by_region):
                    inside = core
                    if masks is not None:
                        inside = masked(
                            core, masks[region : region + 1][tile.core_in_image_features(stride)]
                        )
                    flat = inside.reshape(inside.shape[1], -1)
                    with torch.autocast(flat.device.type, enabled=False):
                        # d/dF <D, F F^T> = (D + D^T) F: the whole image's Gram gradient.
                        surrogate = (
                            surrogate + (gram_gradient.to(flat.dtype) @ flat * flat).sum().float()
                        )
            for name, factor in content_factors.items():
                stride = layer_stride(name)
                core = features[name][tile.core_at(stride)].float()
                target = objective.content_losses[name].target
                target_core = target[tile.core_in_image_features(stride)]
                surrogate = surrogate + factor * (core - target_core).square().sum()
            surrogate.backward()
            assert crop.grad is not None  # crop is a leaf that requires grad
            gradient[tile.box()] += crop.grad
            self._tile_done(2, index)

        tv = image.new_zeros((), dtype=torch.float32)
        if objective.tv_weight:
            tv = objective.tv_weight * total_variation(image.float())
            tv.backward()  # onto image.grad, which the caller cleared
        if image.grad is None:
            image.grad = gradient
        else:
            image.grad += gradient
        return content, style, tv.detach()

    @torch.no_grad()
    def _first_pass(self, image: torch.Tensor):
        """The whole image's Gram matrices (C x C, normalised) and the content layers' summed
        squared errors, from every tile's core."""
        objective, model = self.objective, self.objective.model
        sums: dict[str, torch.Tensor] = {}
        errors = {
            name: image.new_zeros((), dtype=torch.float32) for name in objective.content_losses
        }
        for index, tile in enumerate(self.tiles, start=1):
            with fast_math(model):
                features = model(image[tile.box()], self.layers)
            for name, loss in objective.style_losses.items():
                stride = layer_stride(name)
                core = features[name][tile.core_at(stride)]
                if loss.masks is None:
                    part = _core_gram_sum(core)[None]
                else:
                    masks = loss.masks[tile.core_in_image_features(stride)]
                    part = torch.stack([_core_gram_sum(masked(core, mask[None])) for mask in masks])
                sums[name] = sums[name] + part if name in sums else part
            for name, loss in objective.content_losses.items():
                stride = layer_stride(name)
                core = features[name][tile.core_at(stride)].float()
                target_core = loss.target[tile.core_in_image_features(stride)]
                errors[name] += (core - target_core).square().sum()
            self._tile_done(1, index)
        grams = _normalised(sums, *self.size)
        for name, loss in objective.style_losses.items():
            if loss.masks is not None:  # normalised by each region's mass instead
                for region, weight in enumerate(loss.region_weights):
                    grams[name][region] /= max(weight, 1e-12)
        return grams, errors
