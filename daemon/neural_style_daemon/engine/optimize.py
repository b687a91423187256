"""One pyramid scale: the objective built from targets, and an optimiser stepped one iteration
at a time so that progress and cancel happen between iterations."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .capture import captured
from .lbfgs import LBFGS
from .losses import (
    ContentLoss,
    StyleLoss,
    TemporalLoss,
    gram_matrix,
    guided_gram,
    total_variation,
)
from .params import Optimizer, StyleParams
from .tiles import EvaluationStopped, TiledEvaluation
from .vgg import VGGFeatures, fast_math

# At most this much memory for the L-BFGS history (two image-sized vectors per entry): at
# 4096 x 4096 twenty entries take 4 GB in bf16, 8 GB in fp32, beside the network's activations.
LBFGS_HISTORY_BYTES = 4 * 2**30


# Out of memory in a scale, an L-BFGS job runs that scale again with the optimiser remembering
# this many steps instead of 20: three quarters of the history's memory freed for a loss about
# 1 % higher (docs/benchmarks.md, "The engine's measured choices"), where a smaller size would
# halve the pixels.
SHORT_LBFGS_HISTORY = 5


def shorter_lbfgs_history(params: StyleParams) -> int | None:
    """The L-BFGS history to run again with after running out of memory with `params`; None
    when the job does not use L-BFGS or remembers no more than that already."""
    if params.optimizer is not Optimizer.LBFGS or params.lbfgs_history <= SHORT_LBFGS_HISTORY:
        return None
    return SHORT_LBFGS_HISTORY


# The order of the loss terms in `LossTerms.stacked()`; a job with a temporal loss (a frame of
# a sequence) has "temporal" before "total".
TERM_NAMES = ("content", "style", "tv", "total")
TEMPORAL_TERM_NAMES = ("content", "style", "tv", "temporal", "total")


def term_floats(values: list[float], names: tuple[str, ...] = TERM_NAMES) -> dict[str, float]:
    return dict(zip(names, values, strict=True))


@dataclass
class LossTerms:
    """The objective's parts for one evaluation (tensors until someone reads them)."""

    content: torch.Tensor
    style: torch.Tensor
    tv: torch.Tensor
    temporal: torch.Tensor | None = None  # only in a frame of a sequence

    @property
    def total(self) -> torch.Tensor:
        total = self.content + self.style + self.tv
        return total if self.temporal is None else total + self.temporal

    @property
    def names(self) -> tuple[str, ...]:
        return TERM_NAMES if self.temporal is None else TEMPORAL_TERM_NAMES

    def stacked(self) -> torch.Tensor:
        """The terms in `names` order, as one fp32 vector on the device (read back as one
        copy: `term_floats(terms.stacked().tolist(), terms.names)`)."""
        terms = [self.content, self.style, self.tv]
        if self.temporal is not None:
            terms.append(self.temporal)
        return torch.stack([value.detach().float() for value in (*terms, self.total)])


class Objective(nn.Module):
    """Weighted content, style and total-variation losses for one scale."""

    def __init__(
        self,
        model: VGGFeatures,
        content_features: dict[str, torch.Tensor],
        style_grams: dict[str, torch.Tensor],
        params: StyleParams,
        region_masks: dict[str, torch.Tensor] | None = None,
        temporal: TemporalLoss | None = None,
    ) -> None:
        """`style_grams`: each style layer's target, 1 x C x C; with `region_masks` (each style
        layer's R x 1 x h x w masks), R x C x C, one target per region. `temporal`: a frame of
        a sequence, held near the frame before (weighted by `params.temporal_weight`)."""
        super().__init__()
        self.model = model
        self.content_losses = nn.ModuleDict(
            {name: ContentLoss(target) for name, target in content_features.items()}
        )
        masks = region_masks or {}
        self.style_losses = nn.ModuleDict(
            {name: StyleLoss(gram, masks.get(name)) for name, gram in style_grams.items()}
        )
        layer_weights = params.style_layer_weights or (1.0,) * len(params.style_layers)
        total_layer_weight = sum(layer_weights) or 1.0
        named_weights = zip(params.style_layers, layer_weights, strict=True)
        self.style_layer_weights = {name: w / total_layer_weight for name, w in named_weights}
        self.content_weight = params.content_weight / len(content_features)
        self.style_weight = params.resolved_style_weight
        self.tv_weight = params.tv_weight
        self.temporal = temporal
        self.temporal_weight = params.temporal_weight
        self.layers = tuple(self.content_losses) + tuple(self.style_losses)

    @property
    def term_names(self) -> tuple[str, ...]:
        """The names of its evaluations' terms, in `LossTerms.stacked()` order."""
        return TERM_NAMES if self.temporal is None else TEMPORAL_TERM_NAMES

    def temporal_term(self, image: torch.Tensor) -> torch.Tensor | None:
        """The weighted temporal loss of `image`; None without one. A pixel-wise term: a tiled
        evaluation takes it on the whole image, as it does the total variation."""
        if self.temporal is None:
            return None
        return self.temporal_weight * self.temporal(image)

    def forward(self, image: torch.Tensor) -> LossTerms:
        contents: list[torch.Tensor] = []
        styles: list[torch.Tensor] = []

        def through_losses(name: str, features: torch.Tensor) -> torch.Tensor:
            # Each loss taps the features on their way to the next layer, so that its gradient
            # is made when the backward pass gets there (losses._StyleTap: less memory).
            # ModuleDict's lookups are typed as any Module: the asserts say which loss it holds.
            if name in self.content_losses:
                content_loss = self.content_losses[name]
                assert isinstance(content_loss, ContentLoss)
                features, loss = content_loss.tap(features)
                contents.append(loss)
            if name in self.style_losses:
                style_loss = self.style_losses[name]
                assert isinstance(style_loss, StyleLoss)
                features, loss = style_loss.tap(features)
                styles.append(self.style_layer_weights[name] * loss)
            return features

        self.model(image, self.layers, tap=through_losses)
        zero = image.new_zeros((), dtype=torch.float32)
        # Added in layer order, as sum() would: reduce only says to the type checker that the
        # result is a tensor (there is at least one content and one style layer).
        content = functools.reduce(operator.add, contents)
        style = functools.reduce(operator.add, styles)
        return LossTerms(
            content=self.content_weight * content,
            style=self.style_weight * style,
            tv=self.tv_weight * total_variation(image.float()) if self.tv_weight else zero,
            temporal=self.temporal_term(image),
        )


@torch.no_grad()
def layer_features(
    model: VGGFeatures, image: torch.Tensor, layers: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    with fast_math(model):
        return {name: f.float() for name, f in model(image, layers).items()}


@torch.no_grad()
def layer_grams(
    model: VGGFeatures,
    image: torch.Tensor,
    layers: tuple[str, ...],
    masks: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The Gram matrices at `layers`; with `masks` (a 1 x 1 x h x w mask per layer), the
    guided Gram matrices of the masked part."""
    with fast_math(model):
        features = model(image, layers)
    if masks is None:
        return {name: gram_matrix(f) for name, f in features.items()}
    return {name: guided_gram(f, masks[name]) for name, f in features.items()}


def make_optimizer(
    image: torch.Tensor, params: StyleParams, *, pairs_in_bf16: bool = False
) -> LBFGS | torch.optim.Adam:
    """The job's optimiser over `image`; L-BFGS keeps its pairs in bf16 with `pairs_in_bf16`
    (where the network runs in bf16: lbfgs.py)."""
    if params.optimizer is Optimizer.ADAM:
        return torch.optim.Adam([image], lr=params.learning_rate)
    pair_dtype = torch.bfloat16 if pairs_in_bf16 else image.dtype
    history = lbfgs_history(image, params.lbfgs_history, pair_dtype)
    return LBFGS(image, history=history, pair_dtype=pair_dtype)


def lbfgs_history(image: torch.Tensor, wanted: int, pair_dtype: torch.dtype | None = None) -> int:
    """`wanted` entries, fewer where they would not fit in LBFGS_HISTORY_BYTES; pairs stored
    in `pair_dtype` (the image's by default)."""
    entry_bytes = 2 * image.numel() * (pair_dtype or image.dtype).itemsize  # s and y
    return max(1, min(wanted, LBFGS_HISTORY_BYTES // entry_bytes))


# Steps over which the best image's look must change by more than `tolerance` (relative) for a
# scale to go on.
PLATEAU_WINDOW = 10
# On CUDA the loop reads the loss back (plateau test, progress, cancel) only every few steps.
# Each read leaves the device idle while the host prepares the next step (the optimiser's
# launches, the progress callback); a scale that has stalled runs on to the next read, half
# the spacing on average. For n steps of t ms with i ms idle per read, reading every k steps
# costs n*i/k + k*t/2, least at k = sqrt(2*n*i/t); the estimates behind 4 at 512 px are in
# docs/benchmarks.md, "The engine's measured choices".
STEPS_BETWEEN_READS_AT_512 = 4
MAX_STEPS_BETWEEN_READS = 8
# Scales up to this many pixels replay their evaluation as a CUDA graph (capture.py) where the
# engine allows it: above, the step is bound by arithmetic, not launches, and the capture's
# warm-up would cost more than it saves (docs/benchmarks.md, "The engine's measured choices").
CAPTURE_MAX_PIXELS = 1024 * 1024


def steps_between_reads(device: torch.device, size: tuple[int, int]) -> int:
    """How many steps the loop runs between reads of the loss: 8 at 256 px, 4 at 512, 2 at
    1024, 1 from about 1370 px. A CPU computes the loss in the host's own time, so reading it
    costs nothing there: every step."""
    if device.type != "cuda":
        return 1
    spacing = round(STEPS_BETWEEN_READS_AT_512 * math.sqrt(512 * 512 / (size[0] * size[1])))
    return max(1, min(MAX_STEPS_BETWEEN_READS, spacing))


def optimize_scale(
    objective: Objective,
    start: torch.Tensor,
    iterations: int,
    params: StyleParams,
    after_step: Callable[[int, torch.Tensor, dict[str, float], bool, torch.Tensor], bool],
    tolerance: float = 0.0,
    read_every: int = 1,
    read_at: Callable[[int], bool] | None = None,
    cuda_graph: bool = False,
    tile_size: int | None = None,
    on_tile: Callable[[int, int, int, int], bool] | None = None,
) -> tuple[torch.Tensor, dict[str, float] | None]:
    """Run up to `iterations` optimiser steps from `start` (1 x 3 x H x W) and return the best
    image evaluated, with its loss terms (None if no step ran).

    The loss is read back every `read_every` steps, after each step i where `read_at(i)`, and
    after the last one; at each read `after_step(i, image, losses, last, best)` gets the step
    number, the image and the loss terms of step i (`last`: the scale ends here) and the best
    image so far, which the scale returns if it ends there (later steps update it in place:
    copy it to keep it), and returns False to stop (cancel). The scale ends at the first read
    after the best image's look (its distances to the content and the style) changed by no
    more than `tolerance` (relative) over PLATEAU_WINDOW steps; the steps run since then can
    only have improved the best image.
    With `cuda_graph` (a CUDA image of at most CAPTURE_MAX_PIXELS), each evaluation is one
    replayed CUDA graph. With `tile_size`, an image with a longer side is evaluated in tiles
    (tiles.TiledEvaluation), and `on_tile(i, pass, tile, tiles)` hears of each tile of step i;
    its False stops the scale there, with the best image of the steps before.

    Departures from the usual loop: the image is clamped to [0, 1] before each evaluation (a
    projection, as PyTorch's tutorial does), because an image optimised unconstrained and
    clamped afterwards scored worse than the loss it had reached; and the best iterate is kept,
    because L-BFGS without a line search can climb back up after a good step.
    """
    # Contiguous: L-BFGS adds its flat direction to the image as a view, which fails on the
    # strided (H x W x C-ordered) tensor that an image converted from an array without
    # resizing is.
    image = start.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    # L-BFGS's pairs in bf16 on CUDA only, where the update is bound by the bytes it reads; a
    # CPU's bf16 matrix-vector products are slower than its fp32 ones.
    pairs_in_bf16 = objective.model.mixed_precision and image.is_cuda
    optimizer = make_optimizer(image, params, pairs_in_bf16=pairs_in_bf16)
    best = _BestIterate(image, objective.term_names)
    latest: list[torch.Tensor] = []  # the terms of the latest evaluation, on the device

    height, width = image.shape[-2:]
    step = 0  # the step being evaluated, for on_tile
    tiled = None
    if tile_size is not None and max(height, width) > tile_size:
        heard = None if on_tile is None else lambda *tile: on_tile(step, *tile)
        tiled = TiledEvaluation(objective, height, width, tile_size, on_tile=heard)
        cuda_graph = False

    def evaluate() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            image.clamp_(0, 1)
        image.grad = None
        if tiled is not None:
            temporal = objective.temporal_term(image)
            if temporal is not None:
                temporal.backward()  # onto image.grad, which the tiles then add to
                temporal = temporal.detach()
            tiled_terms = LossTerms(*tiled(image), temporal=temporal)
            return tiled_terms.total.detach(), tiled_terms.stacked()
        with fast_math(objective.model):
            terms = objective(image)
        total = terms.total
        total.backward()
        return total.detach(), terms.stacked()

    evaluation = evaluate
    if cuda_graph and image.is_cuda and image.shape[-2] * image.shape[-1] <= CAPTURE_MAX_PIXELS:
        evaluation = captured(evaluate, image) or evaluate

    def closure() -> torch.Tensor:
        total, terms = evaluation()
        latest[:] = [terms]
        best.offer(image, terms)
        return total

    for i in range(1, iterations + 1):
        step = i
        try:
            optimizer.step(closure)  # one evaluation per step, both optimisers
        except EvaluationStopped:
            break  # mid-step: the optimiser's state is dropped with it
        if i % read_every and i < iterations and not (read_at and read_at(i)):
            continue
        losses, stalled = best.read(latest[0], tolerance)
        last = stalled or i == iterations
        if not after_step(i, image.detach(), losses, last, best.image) or stalled:
            break
    return best.result()


class _BestIterate:
    """The lowest-loss image evaluated so far, tracked on the device so that no step waits
    for a read-back, and its look after each step, read in batches for the plateau test."""

    def __init__(self, image: torch.Tensor, names: tuple[str, ...] = TERM_NAMES) -> None:
        self.image = image.detach().clone()
        self.names = names
        self.terms = torch.full((len(names),), math.inf, device=image.device)
        # The best image's content and style terms after each step since the last read.
        self.unread: list[torch.Tensor] = []
        self.looks: list[tuple[float, float]] = []  # their square roots after each step, as read
        self.evaluated = False

    def offer(self, image: torch.Tensor, terms: torch.Tensor) -> None:
        better = terms[-1] < self.terms[-1]  # a NaN loss is never better
        torch.where(better, image.detach(), self.image, out=self.image)
        self.terms = torch.where(better, terms, self.terms)
        self.unread.append(self.terms[:2])
        self.evaluated = True

    def read(self, latest: torch.Tensor, tolerance: float) -> tuple[dict[str, float], bool]:
        """The terms of `latest` as numbers, and whether the look stalled at any step since
        the last read: one copy from the device for both."""
        values = torch.cat([latest, *self.unread]).tolist()
        self.unread.clear()
        stalled = False
        best = values[len(self.names) :]
        for content, style in zip(best[::2], best[1::2], strict=True):
            self.looks.append((math.sqrt(max(content, 0.0)), math.sqrt(max(style, 0.0))))
            stalled = stalled or (tolerance > 0 and self._stalled(tolerance))
        return term_floats(values[: len(self.names)], self.names), stalled

    def _stalled(self, tolerance: float) -> bool:
        """Whether neither distance of the look (the square roots of the content and the style
        terms: look.py's measures, up to the weights) moved by more than `tolerance`, relative,
        over the last PLATEAU_WINDOW steps. The total loss alone flattens while the two still
        trade against each other, and the picture still changes."""
        if len(self.looks) <= PLATEAU_WINDOW:
            return False
        before, now = self.looks[-1 - PLATEAU_WINDOW], self.looks[-1]
        return all(abs(b - n) <= tolerance * max(b, n) for b, n in zip(before, now, strict=True))

    def result(self) -> tuple[torch.Tensor, dict[str, float] | None]:
        if not self.evaluated:
            return self.image.clamp(0, 1), None
        return self.image, term_floats(self.terms.tolist(), self.names)
