"""A job's parameters: one frozen dataclass whose defaults are the single source of truth
(the command line derives its options from them), presets, and validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

# The wire's enums and ranges are the engine's: the protocol package is standard-library only,
# so the engine shares them instead of defining them again.
from neural_style_protocol.params import (
    MAX_MAX_MEMORY,
    MAX_SIZE,
    MAX_STRENGTH,
    MIN_MAX_MEMORY,
    MIN_SIZE,
    MIN_TILE_SIZE,
    ColorMode,
    Optimizer,
)
from neural_style_protocol.params import Preset as PresetName

from ..errors import InvalidInputError
from .layers import relu_names

# The smallest side of any image the engine sees: VGG pools it four times down to relu5_1.
MIN_SIDE = MIN_SIZE

STYLE_LAYER_SETS = {
    # Gatys et al. 2016: the first ReLU of each block.
    "default": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
    # "All 13 conv layers", as in the original write-up's richest reconstructions.
    "all": tuple(relu_names("vgg16")),
}


class Init(str, Enum):
    """Where the optimisation starts: the protocol's choices and IMAGE, which the wire does not
    offer (an init image is a file of the local command line), hence an enum of its own."""

    CONTENT = "content"
    NOISE = "noise"
    IMAGE = "image"  # an image passed to stylize() as `init_image`


@dataclass(frozen=True)
class Preset:
    """How much work each pyramid scale gets. The coarsest scale does most of the iterations
    (they are cheap there); finer scales refine what it found."""

    initial_iterations: int
    iterations: int
    # The coarsest scale. The pyramid is there for large outputs, where VGG's receptive field
    # covers a small part of the image and the style's large-scale structure gets lost; up to
    # 512 px one scale sees it whole (jcjohnson/neural-style's default size, single scale).
    # Coarser scales cost time without lowering the loss at the output size (docs/benchmarks.md,
    # "The engine's measured choices").
    min_size: int = 512
    # A scale ends once its look (the distances to the content and to the style) changed by no
    # more than this (relative) over ten steps: strokes keep moving after the look has settled,
    # and those steps are waste. Each preset's tolerance is the loosest that kept its promise
    # to a long reference run on the trained VGG16 (docs/quality.md): `draft` within 5 % of the
    # reference's look, `normal` within 2 %, `best` within about 1 % (converged).
    tolerance: float = 0.0004


PRESETS = {
    PresetName.DRAFT.value: Preset(initial_iterations=300, iterations=100, tolerance=0.002),
    PresetName.NORMAL.value: Preset(initial_iterations=500, iterations=200, tolerance=0.0004),
    PresetName.BEST.value: Preset(initial_iterations=700, iterations=300, tolerance=0.0002),
}


def strength_to_style_weight(strength: float) -> float:
    """Map the one-knob strength (a percentage, 0..100) to the style weight against a content
    weight of 1: 0 -> 0.1 (content dominates), 50 -> 10, 100 -> 1000 (log scale, because
    perceived stylisation grows with the log of the ratio)."""
    fraction = strength / 100.0
    return 10.0 ** (4.0 * fraction - 1.0)


@dataclass(frozen=True)
class StyleParams:
    """Everything that defines a stylisation job, besides the images themselves."""

    size: int | None = None  # processing long side in pixels; None: the content's own
    preset: str = "normal"
    iterations: int | None = None  # per scale after the first; None: from the preset
    initial_iterations: int | None = None  # at the coarsest scale; None: from the preset
    min_size: int | None = None  # coarsest pyramid scale (long side); None: from the preset
    tolerance: float | None = None  # end a scale that stopped improving; 0: never; None: preset
    strength: float | None = 50.0  # 0..100 (%); sets style_weight unless that is given
    content_weight: float = 1.0
    style_weight: float | None = None  # expert override of `strength`
    tv_weight: float = 1.0
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = STYLE_LAYER_SETS["default"]
    style_layer_weights: tuple[float, ...] | None = None  # None: equal
    style_blend: tuple[float, ...] | None = None  # one weight per style image; None: equal
    style_scale: float = 1.0  # style image long side relative to the output's
    style_upscale: bool = False  # allow enlarging a style image beyond its own size
    optimizer: Optimizer = Optimizer.LBFGS
    learning_rate: float = 0.02  # Adam only; the image lives in [0, 1]
    # L-BFGS only: the steps it remembers, each two image-sized vectors. Each step reads the
    # whole history, so fewer pairs mean less memory and traffic; 20 converged as 50 did and 10
    # did not (docs/benchmarks.md, "The engine's measured choices"). jcjohnson/neural-style
    # keeps 100, scipy's L-BFGS-B (Gatys et al.) 10.
    lbfgs_history: int = 20
    # Scales with a side longer than this are evaluated in tiles of about this many pixels
    # (engine/tiles.py): the same loss and gradient in memory bounded by the tile. None: never.
    tile_size: int | None = None
    # What the job may use, in GiB, as if the device had no more free (memory.fit_in_memory
    # plans the history and the tiles for it); None: what the device has free.
    max_memory: float | None = None
    preserve_colors: ColorMode = ColorMode.NONE
    # Frames of a sequence only (frames.py): the weight of the temporal loss (Ruder et al.
    # 2016), the mean squared difference to the frame before warped to this one, on the pixels
    # the optical flow can follow. Chosen by measurement (docs/quality.md, "Animation frames").
    temporal_weight: float = 100.0
    init: Init = Init.CONTENT
    seed: int | None = 0
    preview_every: int = 0  # steps between previews; 0: none
    preview_size: int = 128
    # Steps between snapshots, the image as the result would be, to `stylize`'s `on_snapshot`:
    # after each multiple of this many steps of the whole job (all scales counted); 0: none.
    snapshot_every: int = 0
    # Seconds between snapshots besides those (a live view of the job), the first at the first
    # step; None: none.
    live_interval: float | None = None

    def __post_init__(self) -> None:
        enums = (("optimizer", Optimizer), ("preserve_colors", ColorMode), ("init", Init))
        for name, enum in enums:
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum(value))
            except ValueError:
                choices = ", ".join(e.value for e in enum)
                raise InvalidInputError(f"unknown {name} {value!r} (choose {choices})") from None
        if isinstance(self.style_layers, str):
            object.__setattr__(self, "style_layers", resolve_style_layers(self.style_layers))
        _validate(self)

    @property
    def preset_values(self) -> Preset:
        return PRESETS[self.preset]

    @property
    def resolved_style_weight(self) -> float:
        if self.style_weight is not None:
            return self.style_weight
        return strength_to_style_weight(50.0 if self.strength is None else self.strength)

    def with_overrides(self, **changes: Any) -> StyleParams:
        """A copy with the changes that are not None (command-line style overrides)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def resolve_style_layers(spec: str) -> tuple[str, ...]:
    """A named set ("default", "all") or a comma-separated list of layer names."""
    if spec in STYLE_LAYER_SETS:
        return STYLE_LAYER_SETS[spec]
    return tuple(name.strip() for name in spec.split(",") if name.strip())


def _check_number(name: str, value: float, *, low: float = 0.0, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidInputError(
            f"{name} must be a finite number in [{low:g}, {high:g}], not {value}"
        )


def _check_layers(name: str, layers: tuple[str, ...]) -> None:
    valid = relu_names("vgg16")
    if not layers:
        raise InvalidInputError(f"{name} is empty")
    for layer in layers:
        if layer not in valid:
            raise InvalidInputError(
                f"unknown layer {layer!r} in {name} (use relu1_1 ... relu5_3, or a set: "
                f"{', '.join(STYLE_LAYER_SETS)})"
            )


def _validate(p: StyleParams) -> None:
    if p.preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {p.preset!r} (choose {', '.join(PRESETS)})")
    if p.size is not None:
        _check_number("size", p.size, low=MIN_SIDE, high=MAX_SIZE)
    _check_number("lbfgs_history", p.lbfgs_history, low=1, high=100)
    if p.lbfgs_history != int(p.lbfgs_history):
        raise InvalidInputError(f"lbfgs_history must be a whole number, not {p.lbfgs_history}")
    if p.tile_size is not None:
        _check_number("tile_size", p.tile_size, low=MIN_TILE_SIZE, high=MAX_SIZE)
        if p.tile_size != int(p.tile_size):
            raise InvalidInputError(f"tile_size must be a whole number, not {p.tile_size}")
    if p.max_memory is not None:
        _check_number("max_memory", p.max_memory, low=MIN_MAX_MEMORY, high=MAX_MAX_MEMORY)
    for name in ("iterations", "initial_iterations"):
        value = getattr(p, name)
        if value is not None:
            _check_number(name, value, low=0, high=100_000)
    if p.min_size is not None:
        _check_number("min_size", p.min_size, low=MIN_SIDE, high=MAX_SIZE)
    if p.tolerance is not None:
        _check_number("tolerance", p.tolerance, high=1)
    if p.strength is not None:
        _check_number("strength", p.strength, high=MAX_STRENGTH)
    for name in ("content_weight", "tv_weight", "temporal_weight", "style_scale", "learning_rate"):
        _check_number(name, getattr(p, name))
    if p.style_weight is not None:
        _check_number("style_weight", p.style_weight)
    if p.style_scale <= 0:
        raise InvalidInputError("style_scale must be above 0")
    _check_layers("content_layers", p.content_layers)
    _check_layers("style_layers", p.style_layers)
    if p.style_layer_weights is not None:
        if len(p.style_layer_weights) != len(p.style_layers):
            raise InvalidInputError(
                f"{len(p.style_layer_weights)} style layer weights for {len(p.style_layers)} layers"
            )
        for w in p.style_layer_weights:
            _check_number("a style layer weight", w)
    if p.style_blend is not None:
        for w in p.style_blend:
            _check_number("a style blend weight", w)
        if sum(p.style_blend) <= 0:
            raise InvalidInputError("the style blend weights add up to 0")
    _check_number("preview_every", p.preview_every, high=1_000_000)
    _check_number("preview_size", p.preview_size, low=8, high=1024)
    _check_number("snapshot_every", p.snapshot_every, high=1_000_000)
    if p.snapshot_every != int(p.snapshot_every):
        raise InvalidInputError(f"snapshot_every must be a whole number, not {p.snapshot_every}")
    if p.live_interval is not None:
        _check_number("live_interval", p.live_interval, low=0.01, high=3600)
