"""The style engine: Gatys et al. optimisation over VGG16 features. Free of transport code.

The package imports no torch by itself: the job's parameters (`params`, re-exported here) are
what the command line builds its options from, also for a job that a daemon runs. The entry
point, `stylize.StyleEngine`, and the modules it uses load torch."""

from __future__ import annotations

from .params import PRESETS, STYLE_LAYER_SETS, ColorMode, Init, Optimizer, StyleParams

__all__ = [
    "PRESETS",
    "STYLE_LAYER_SETS",
    "ColorMode",
    "Init",
    "Optimizer",
    "StyleParams",
]
