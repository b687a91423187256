"""The style engine: Gatys et al. optimisation over VGG16 features. Free of transport code."""

from __future__ import annotations

from .params import PRESETS, STYLE_LAYER_SETS, ColorMode, Init, Optimizer, StyleParams
from .stylize import Progress, StyleEngine, StylizeResult

__all__ = [
    "PRESETS",
    "STYLE_LAYER_SETS",
    "ColorMode",
    "Init",
    "Optimizer",
    "Progress",
    "StyleEngine",
    "StyleParams",
    "StylizeResult",
]
