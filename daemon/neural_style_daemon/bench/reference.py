"""The one loss both arms are judged by, and the engine weights that make the engine optimise it.

The reference objective is the PyTorch tutorial's, evaluated on the product's network (VGG16,
the same weights as the engine) at the output size:

    L(x) = 1 * mse(relu4_2(x), relu4_2(content))
         + 1e6 * sum over relu1_1..relu5_1 of mse(G(x), G(style)),  G normalised by C*H*W

Each arm optimises its own objective; only this function decides who got how far.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.losses import ContentLoss, StyleLoss, gram_matrix
from ..engine.params import STYLE_LAYER_SETS
from ..engine.stylize import resize, to_tensor
from ..engine.vgg import VGGFeatures

# The tutorial's layers and weights (Gatys et al.'s choice of layers, the tutorial's weights).
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = STYLE_LAYER_SETS["default"]  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 1e6


@contextmanager
def plain_fp32(*, tf32: bool = False):
    """fp32 on CUDA as a script that sets nothing runs it, but without TF32 (unless `tf32`) in
    convolutions and matrix products, and without cuDNN autotuning (the engine turns that on
    for the whole process). The reference loss should not depend on these settings, and the
    naive arm should not inherit the engine's. Changes nothing on other devices."""
    saved_matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with torch.backends.cudnn.flags(
            enabled=True, benchmark=False, deterministic=False, allow_tf32=tf32
        ):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_matmul


class ReferenceLoss:
    """The tutorial objective on VGG16 at one output size, for images given as uint8 arrays
    or 3 x H x W tensors in [0, 1]; images of another size are resized to the output size."""

    def __init__(self, model: VGGFeatures, content: np.ndarray, style: np.ndarray) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.size = (content.shape[1], content.shape[0])  # (width, height)
        with torch.no_grad(), plain_fp32():
            self.content_target = self._features(self._tensor(content))[CONTENT_LAYER]
            style_features = self._features(self._tensor(style))
            self.style_targets = {name: gram_matrix(style_features[name]) for name in STYLE_LAYERS}

    def _tensor(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(image, np.ndarray):
            image = to_tensor(image, self.device)
        return image.to(self.device, torch.float32)[None]

    def _features(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(batch, (CONTENT_LAYER, *STYLE_LAYERS))

    @torch.no_grad()
    def __call__(self, image: np.ndarray | torch.Tensor) -> float:
        """L(image), the image clamped to [0, 1] and resized to the output size if need be."""
        batch = self._tensor(image).clamp(0, 1)
        if batch.shape[-2:] != (self.size[1], self.size[0]):
            batch = resize(batch, self.size)  # a coarse snapshot, as the engine would enlarge it
        with plain_fp32():
            features = self._features(batch)
            content = F.mse_loss(features[CONTENT_LAYER], self.content_target)
            style = sum(
                F.mse_loss(gram_matrix(features[name]), target)
                for name, target in self.style_targets.items()
            )
            return float(CONTENT_WEIGHT * content + STYLE_WEIGHT * style)


def matched_weights(reference: ReferenceLoss) -> dict[str, Any]:
    """StyleParams fields under which the engine's objective at the output size equals the
    reference objective times a constant (tv_weight 0).

    The engine divides each term by its target's mean square (ContentLoss.scale,
    StyleLoss.scale) and normalises the style layer weights to sum 1. With content_weight 1
    the engine's content term is c * mse_content, c = the content scale; the style term of
    layer l is style_weight * (w_l / sum w) * s_l * mse_l. Choosing w_l = 1 / s_l and
    style_weight = 1e6 * c * sum(1 / s_l) makes that 1e6 * c * mse_l: the whole objective is
    the reference times c, so both have the same minimisers and the same balance.
    """
    content_scale = ContentLoss(reference.content_target).scale
    inverse_scales = tuple(
        1.0 / StyleLoss(reference.style_targets[name]).scale for name in STYLE_LAYERS
    )
    return {
        "content_layers": (CONTENT_LAYER,),
        "style_layers": STYLE_LAYERS,
        "content_weight": CONTENT_WEIGHT,
        "style_weight": STYLE_WEIGHT * content_scale * sum(inverse_scales),
        "style_layer_weights": inverse_scales,
        "tv_weight": 0.0,
    }


def engine_objective_factor(reference: ReferenceLoss) -> float:
    """The constant c with engine objective = c * reference objective (see matched_weights)."""
    return ContentLoss(reference.content_target).scale
