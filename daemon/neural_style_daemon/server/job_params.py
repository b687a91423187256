"""A job's wire parameters (JobParams) as the engine's StyleParams, in the worker process."""

from __future__ import annotations

from neural_style_protocol.params import JobParams

from ..engine.params import Init, StyleParams


def to_style_params(params: JobParams) -> StyleParams:
    """The engine's parameters for a job; InvalidInputError if the engine refuses them.

    `style_weights` is the engine's `style_blend`. The engine shares the wire's enums but for
    `init`, where it has one more choice. Options the wire does not carry keep the engine's
    defaults.
    """
    return StyleParams(
        size=params.size,
        preset=params.preset.value,
        iterations=params.iterations,
        strength=params.strength,
        content_weight=params.content_weight,
        style_weight=params.style_weight,
        tv_weight=params.tv_weight,
        style_blend=params.style_weights,
        style_scale=params.style_scale,
        optimizer=params.optimizer,
        preserve_colors=params.preserve_colors,
        init=Init(params.init.value),
        seed=params.seed,
        preview_every=params.preview_every,
        tile_size=params.tile_size,
        max_memory=params.max_memory,
        live_interval=params.live_interval,
    )
