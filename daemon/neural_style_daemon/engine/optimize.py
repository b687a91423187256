"""One pyramid scale: the objective built from targets, and an optimiser stepped one iteration
at a time so that progress and cancel happen between iterations."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from .lbfgs import LBFGS
from .losses import ContentLoss, StyleLoss, gram_matrix, total_variation
from .params import Optimizer, StyleParams
from .vgg import VGGFeatures

# L-BFGS memory; jcjohnson/neural-style uses 100, 50 converges as well at half the memory.
LBFGS_HISTORY = 50
# At most this much memory for the L-BFGS history (two image-sized vectors per entry): at
# 4096 x 4096 fifty entries would take 20 GB, beside the network's activations.
LBFGS_HISTORY_BYTES = 4 * 2**30


@dataclass
class LossTerms:
    """The objective's parts for one evaluation (tensors until someone reads them)."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.content + self.style + self.tv

    @cached_property
    def floats(self) -> dict[str, float]:
        """The terms as numbers: one read from the device per evaluation (one stacked copy, not
        one per term), however many readers (the best-iterate tracker, progress) ask."""
        terms = {"content": self.content, "style": self.style, "tv": self.tv, "total": self.total}
        values = torch.stack([value.detach().float() for value in terms.values()]).tolist()
        return dict(zip(terms, values, strict=True))


def fast_math(model: VGGFeatures):
    """bf16 autocast where the engine chose it for this model (precision "auto" on CUDA, or on
    a CPU with bf16 matrix units: the convolutions dominate); otherwise fp32."""
    if model.mixed_precision:
        return torch.autocast(model.device.type, dtype=torch.bfloat16)
    return nullcontext()


class Objective(nn.Module):
    """Weighted content, style and total-variation losses for one scale."""

    def __init__(
        self,
        model: VGGFeatures,
        content_features: dict[str, torch.Tensor],
        style_grams: dict[str, torch.Tensor],
        params: StyleParams,
    ) -> None:
        super().__init__()
        self.model = model
        self.content_losses = nn.ModuleDict(
            {name: ContentLoss(target) for name, target in content_features.items()}
        )
        self.style_losses = nn.ModuleDict(
            {name: StyleLoss(gram) for name, gram in style_grams.items()}
        )
        layer_weights = params.style_layer_weights or (1.0,) * len(params.style_layers)
        total_layer_weight = sum(layer_weights) or 1.0
        named_weights = zip(params.style_layers, layer_weights, strict=True)
        self.style_layer_weights = {name: w / total_layer_weight for name, w in named_weights}
        self.content_weight = params.content_weight / len(content_features)
        self.style_weight = params.resolved_style_weight
        self.tv_weight = params.tv_weight
        self.layers = tuple(self.content_losses) + tuple(self.style_losses)

    def forward(self, image: torch.Tensor) -> LossTerms:
        features = self.model(image, self.layers)
        zero = image.new_zeros((), dtype=torch.float32)
        content = sum(loss(features[name]) for name, loss in self.content_losses.items())
        style = sum(
            self.style_layer_weights[name] * loss(features[name])
            for name, loss in self.style_losses.items()
        )
        return LossTerms(
            content=self.content_weight * content,
            style=self.style_weight * style,
            tv=self.tv_weight * total_variation(image.float()) if self.tv_weight else zero,
        )


@torch.no_grad()
def layer_features(
    model: VGGFeatures, image: torch.Tensor, layers: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    with fast_math(model):
        return {name: f.float() for name, f in model(image, layers).items()}


@torch.no_grad()
def layer_grams(
    model: VGGFeatures, image: torch.Tensor, layers: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    with fast_math(model):
        return {name: gram_matrix(f) for name, f in model(image, layers).items()}


def make_optimizer(image: torch.Tensor, params: StyleParams) -> LBFGS | torch.optim.Adam:
    if params.optimizer is Optimizer.ADAM:
        return torch.optim.Adam([image], lr=params.learning_rate)
    return LBFGS(image, history=lbfgs_history(image))


def lbfgs_history(image: torch.Tensor) -> int:
    """LBFGS_HISTORY entries, fewer where they would not fit in LBFGS_HISTORY_BYTES."""
    entry_bytes = 2 * image.numel() * 4  # s and y, fp32
    return max(1, min(LBFGS_HISTORY, LBFGS_HISTORY_BYTES // entry_bytes))


# Steps over which a scale must improve its best loss by `tolerance` (relative) to go on.
PLATEAU_WINDOW = 10


def optimize_scale(
    objective: Objective,
    start: torch.Tensor,
    iterations: int,
    params: StyleParams,
    after_step: Callable[[int, torch.Tensor, LossTerms, bool], bool],
    tolerance: float = 0.0,
) -> tuple[torch.Tensor, LossTerms | None]:
    """Run up to `iterations` optimiser steps from `start` (1 x 3 x H x W) and return the best
    image evaluated, with its loss terms (None if no step ran). `after_step(i, image, terms,
    last)` is called after each step (`last`: the scale ends here) and returns False to stop
    (cancel); the scale ends early once its best loss improved by less than `tolerance`
    (relative) over the last PLATEAU_WINDOW steps.

    Departures from the usual loop: the image is clamped to [0, 1] before each evaluation (a
    projection, as PyTorch's tutorial does), because an image optimised unconstrained and
    clamped afterwards scored worse than the loss it had reached; and the best iterate is kept,
    because L-BFGS without a line search can climb back up after a good step.
    """
    # Contiguous: L-BFGS adds its flat direction to the image as a view, which fails on the
    # strided (H x W x C-ordered) tensor that an image converted from an array without
    # resizing is.
    image = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimizer = make_optimizer(image, params)
    latest: list[LossTerms] = []
    best = _BestIterate()

    def closure() -> torch.Tensor:
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad(set_to_none=True)
        with fast_math(objective.model):
            terms = objective(image)
        total = terms.total
        total.backward()
        latest[:] = [terms]
        best.offer(image, terms)
        return total

    for i in range(1, iterations + 1):
        optimizer.step(closure)
        stalled = tolerance > 0 and best.stalled(tolerance)
        if not after_step(i, image.detach(), latest[0], stalled or i == iterations) or stalled:
            break
    if best.image is None:
        return image.detach().clamp(0, 1), None
    return best.image, best.terms


class _BestIterate:
    """The lowest-loss image seen so far, and the history of best losses for the plateau test.
    Reading the loss syncs with the device once per step; the engine reads it for progress
    anyway."""

    def __init__(self) -> None:
        self.image: torch.Tensor | None = None
        self.terms: LossTerms | None = None
        self.loss = math.inf
        self.history: list[float] = []

    def offer(self, image: torch.Tensor, terms: LossTerms) -> None:
        loss = terms.floats["total"]
        if loss < self.loss:
            self.loss, self.terms = loss, terms
            self.image = image.detach().clone()
        self.history.append(self.loss)

    def stalled(self, tolerance: float) -> bool:
        if len(self.history) <= PLATEAU_WINDOW:
            return False
        before = self.history[-1 - PLATEAU_WINDOW]
        return before - self.loss < tolerance * before
