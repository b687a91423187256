"""The Gatys et al. losses as small modules: content, style (Gram matrices), total variation.

Departure from the paper: each content and style term is divided by the mean square of its
target, so a term reads as a relative error and the weights mean the same whatever the layer's
activation scale (which differs by orders of magnitude between relu1_1 and relu5_1, and between
ImageNet and random weights). Equal per-layer weights then balance the layers, as Gatys et al.
intended with their per-layer normalisation, and one `strength` value maps to a stable
style/content balance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of N x C x H x W features, normalised by C x H x W, returned in fp32.

    The product runs in the features' own dtype. For bf16 features (under autocast) the matrix
    units accumulate in fp32 and only the C x C result is rounded to bf16 (0.2 % of the image
    gradient against an fp32 product): at 256 px on a CPU with AMX that made a step 20 % faster
    than upcasting the features (95 against 127 ms per evaluation) and took the same number of
    steps to each loss (docs/benchmarks.md)."""
    n, c, h, w = features.shape
    # Autocast would pick the product's dtype itself; the features' dtype decides here.
    with torch.autocast(features.device.type, enabled=False):
        if n == 1:
            # mm on the 2-D view: with bmm, autograd sums the two gradients of `flat` through
            # a strided add over the whole feature map, doubling the Gram's cost on the CPU
            # (the same happens to a channels-last view as H*W x C rows: 145 against 95 ms).
            flat = features.reshape(c, h * w)
            return (flat @ flat.T).float().div_(c * h * w)[None]
        flat = features.reshape(n, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)).float() / (c * h * w)


def relative_scale(target: torch.Tensor) -> float:
    """1 / mean square of the target; 1 for an all-zero target (a black image through
    bias-free layers), where there is no scale to divide out."""
    mean_square = target.square().mean().item()
    return 1.0 / mean_square if mean_square > 0 else 1.0


class ContentLoss(nn.Module):
    """Relative mean squared error of features against the content's features."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.scale = relative_scale(self.target)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(features.float(), self.target) * self.scale


class StyleLoss(nn.Module):
    """Relative mean squared error of the Gram matrix against a (blended) target Gram."""

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target_gram.detach().float())
        self.scale = relative_scale(self.target)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(gram_matrix(features), self.target) * self.scale


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels: penalises high-frequency noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.square().mean() + dy.square().mean()
