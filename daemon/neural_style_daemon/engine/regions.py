"""A style per region (Gatys et al. 2017, spatial control): which styles make each region's
target, and the regions' masks brought to each layer's resolution."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError
from .tiles import layer_stride


@dataclass(frozen=True)
class Region:
    """Part of the image with one style target: the blend of `styles` by `weights` (summing to
    1), inside the content mask of style `mask`, or everywhere where `mask` is None."""

    styles: tuple[int, ...]
    weights: tuple[float, ...]
    mask: int | None


def plan_regions(blend: Sequence[float], has_mask: Sequence[bool]) -> list[Region]:
    """The styles without a mask share one region, the whole image, blended by their weights;
    each style with a mask rules its own region at full weight. Without masks: one region, the
    blend of every style, as the unguided loss has it."""
    unmasked = [i for i, masked in enumerate(has_mask) if not masked]
    regions = []
    total = sum(blend[i] for i in unmasked)
    if unmasked and total > 0:
        weights = tuple(blend[i] / total for i in unmasked)
        regions.append(Region(tuple(unmasked), weights, None))
    regions.extend(Region((i,), (1.0,), i) for i, masked in enumerate(has_mask) if masked)
    return regions


def check_masks(
    masks: Sequence[np.ndarray | None] | None,
    shapes: Sequence[tuple[int, int]],
    what: str,
    of: Callable[[int], str],
) -> list[np.ndarray | None]:
    """One mask or None per style, each a 2-D uint8 array of the (height, width) in `shapes`;
    `what` names them in messages ("style mask"), `of(n)` what mask n's size must match."""
    if masks is None:
        return [None] * len(shapes)
    masks = list(masks)
    if len(masks) != len(shapes):
        raise InvalidInputError(f"{len(masks)} {what}s for {len(shapes)} style images")
    for index, (mask, shape) in enumerate(zip(masks, shapes, strict=True), start=1):
        if mask is None:
            continue
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8 or mask.ndim != 2:
            raise InvalidInputError(f"{what} {index}: expected a 2-D uint8 array (grey)")
        if mask.shape != shape:
            raise InvalidInputError(
                f"{what} {index} is {mask.shape[1]}x{mask.shape[0]}; {of(index)} is "
                f"{shape[1]}x{shape[0]}"
            )
    return masks


def mask_tensor(mask: np.ndarray, device: torch.device) -> torch.Tensor:
    """A 2-D uint8 mask as a 1 x 1 x H x W float tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(mask)).to(device).float().div_(255)[None, None]


def layer_masks(
    masks: Sequence[torch.Tensor | None],
    size: tuple[int, int],
    layers: Sequence[str],
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Each layer's R x 1 x h x w masks of an image processed at `size` (width, height), one per
    entry of `masks` (1 x 1 x H x W at any size; None: all ones): each feature position gets
    the mean of the mask over the pixels it stands for, so a soft edge stays soft."""
    width, height = size
    out = {}
    for name in layers:
        stride = layer_stride(name)
        shape = (height // stride, width // stride)
        out[name] = torch.cat(
            [
                F.adaptive_avg_pool2d(mask, shape)
                if mask is not None
                else torch.ones((1, 1, *shape), device=device)
                for mask in masks
            ]
        )
    return out
