"""A job's parameters as they travel: one frozen dataclass with typed, range-checked fields.

The enums and ranges here are the engine's too: its parameters (daemon/.../engine/params.py)
import them, never the other way round. The defaults equal the engine's `StyleParams` defaults;
a test in the daemon's suite compares them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum

from ._fields import check_float, check_int, check_str
from .errors import ErrorCode, ProtocolError

_CODE = ErrorCode.INVALID_PARAM

# Ranges, in one table so that validation and error messages cannot drift apart.
MIN_SIZE, MAX_SIZE = 16, 8192  # processing long side; VGG needs 16 px down to relu5_1
MAX_ITERATIONS = 10_000
MIN_TILE_SIZE = 64  # a tile's core; the engine adds a halo around it
MIN_MAX_MEMORY, MAX_MAX_MEMORY = 0.05, 4096.0  # GiB a job may be capped at
MAX_PREVIEW_EVERY = 10_000
MIN_LIVE_INTERVAL, MAX_LIVE_INTERVAL = 0.1, 3600.0  # seconds between live images
MAX_SEED = 2**31 - 1
MIN_STYLE_SCALE, MAX_STYLE_SCALE = 0.05, 8.0
MAX_STRENGTH = 100.0
# A sanity cap before the count is compared with the styles actually sent.
MAX_STYLE_WEIGHTS = 64


class Preset(str, Enum):
    """How much work each pyramid scale gets (the engine's PRESETS)."""

    DRAFT = "draft"
    NORMAL = "normal"
    BEST = "best"


class ColorMode(str, Enum):
    """Whether to keep the content's colours."""

    NONE = "none"
    LUMINANCE = "luminance"
    HISTOGRAM = "histogram"


class Init(str, Enum):
    """Where the optimisation starts. The engine's `image` init is not offered on the wire."""

    CONTENT = "content"
    NOISE = "noise"


class Optimizer(str, Enum):
    LBFGS = "lbfgs"
    ADAM = "adam"


_ENUM_FIELDS: dict[str, type[Enum]] = {
    "preset": Preset,
    "preserve_colors": ColorMode,
    "init": Init,
    "optimizer": Optimizer,
}


# Fields newer than the first daemons, which refuse keys they do not know: left out unless set.
_SENT_ONLY_WHEN_SET = ("tile_size", "max_memory", "live_interval")


@dataclass(frozen=True)
class JobParams:
    """Everything a client may set for one job, besides the images. `strength` is a percentage
    (0..100), as everywhere a person types it."""

    preset: Preset = Preset.NORMAL
    strength: float = 50.0  # 0..100 (%)
    size: int | None = None  # processing long side; None: the content's own
    iterations: int | None = None  # per scale after the first; None: from the preset
    preserve_colors: ColorMode = ColorMode.NONE
    init: Init = Init.CONTENT
    seed: int | None = 0  # None: a random seed
    style_weights: tuple[float, ...] | None = None  # one per style image; None: equal
    style_scale: float = 1.0  # style image long side relative to the output's
    optimizer: Optimizer = Optimizer.LBFGS
    tv_weight: float = 1.0
    content_weight: float = 1.0
    style_weight: float | None = None  # expert override of `strength`
    preview_every: int = 0  # steps between previews; 0: none
    tile_size: int | None = None  # scales with a longer side are evaluated in tiles; None: never
    max_memory: float | None = None  # GiB the job may use; None: what the daemon has free
    # Seconds between live images of the result so far (Progress.live_image), the first at the
    # first step; None: none.
    live_interval: float | None = None

    def __post_init__(self) -> None:
        for name, enum in _ENUM_FIELDS.items():
            value = getattr(self, name)
            if not isinstance(value, enum):
                choices = [member.value for member in enum]
                value = enum(check_str(value, f"params.{name}", _CODE, max_len=32, choices=choices))
            object.__setattr__(self, name, value)
        self._check_numbers()
        object.__setattr__(self, "style_weights", _check_style_weights(self.style_weights))

    def _check_numbers(self) -> None:
        """Check each number and store floats as floats (JSON may carry 50 for 50.0)."""

        def put_float(name: str, low: float, high: float) -> None:
            object.__setattr__(
                self, name, check_float(getattr(self, name), f"params.{name}", low, high, _CODE)
            )

        def check_optional_int(name: str, low: int, high: int) -> None:
            if getattr(self, name) is not None:
                check_int(getattr(self, name), f"params.{name}", low, high, _CODE)

        put_float("strength", 0.0, MAX_STRENGTH)
        put_float("style_scale", MIN_STYLE_SCALE, MAX_STYLE_SCALE)
        put_float("tv_weight", 0.0, float("inf"))
        put_float("content_weight", 0.0, float("inf"))
        if self.style_weight is not None:
            put_float("style_weight", 0.0, float("inf"))
        check_optional_int("size", MIN_SIZE, MAX_SIZE)
        check_optional_int("iterations", 0, MAX_ITERATIONS)
        check_optional_int("seed", 0, MAX_SEED)
        check_optional_int("tile_size", MIN_TILE_SIZE, MAX_SIZE)
        if self.max_memory is not None:
            put_float("max_memory", MIN_MAX_MEMORY, MAX_MAX_MEMORY)
        if self.live_interval is not None:
            put_float("live_interval", MIN_LIVE_INTERVAL, MAX_LIVE_INTERVAL)
        check_int(self.preview_every, "params.preview_every", 0, MAX_PREVIEW_EVERY, _CODE)

    def to_wire(self) -> dict[str, object]:
        """A JSON-ready dict holding every field (the newer ones only when set)."""
        wire: dict[str, object] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name in _SENT_ONLY_WHEN_SET and value is None:
                continue
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            wire[field.name] = value
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> JobParams:
        """Parameters from a decoded JSON object; missing keys take their defaults, unknown
        keys, wrong types and values out of range raise ProtocolError(invalid_param)."""
        if not isinstance(wire, dict):
            raise ProtocolError(_CODE, "params must be a JSON object")
        known = {field.name for field in fields(cls)}
        unknown = sorted(str(key)[:40] for key in wire if key not in known)
        if unknown:
            raise ProtocolError(_CODE, f"unknown key(s) in params: {', '.join(unknown[:5])}")
        values = dict(wire)
        if isinstance(values.get("style_weights"), list):
            values["style_weights"] = tuple(values["style_weights"])
        return cls(**values)


def _check_style_weights(weights: object) -> tuple[float, ...] | None:
    """None, or a non-empty tuple of positive finite floats."""
    if weights is None:
        return None
    if not isinstance(weights, tuple):
        raise ProtocolError(_CODE, "params.style_weights must be a list of numbers or null")
    if not 1 <= len(weights) <= MAX_STYLE_WEIGHTS:
        raise ProtocolError(
            _CODE,
            f"params.style_weights must hold 1 to {MAX_STYLE_WEIGHTS} weights, not {len(weights)}",
        )
    return tuple(
        check_float(weight, "params.style_weights[]", 0.0, float("inf"), _CODE, above_low=True)
        for weight in weights
    )
