"""`neural-style bench --suite quality`: how each preset's result looks against a long reference
run, pair by pair, on a trained network.

Per content/style pair and size, the engine runs every preset and a reference (`best` with
`reference_factor` times its iterations and no early stop) from the content at the processing
size, so every result is judged at that size (look.py). Each run records its time, steps and
final loss terms, its look (style and content distances), the look's gap to the reference's,
and the colour layout's CIEDE2000 against the reference. Optionally it runs a strength sweep
(the normal preset at each strength) for the trade-off between style and content.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..engine import StyleParams
from ..engine.params import PRESETS
from ..engine.stylize import StyleEngine
from ..errors import InvalidInputError
from ..imageio import load_image
from .inputs import SHARED_IMAGES, at_size
from .look import ColourDifference, Look, LookMeter, colour_difference

log = logging.getLogger(__name__)

# The default pairs: each of the four sample photos with a different painting, so that every
# sample image is seen once (all sixteen combinations: `all_pairs`).
DEFAULT_PAIRS = (
    ("content/astronaut.png", "style/the_scream.jpg"),
    ("content/chelsea.png", "style/starry_night.jpg"),
    ("content/rocket.png", "style/shipwreck.jpg"),
    ("content/coffee.png", "style/woman-with-hat-matisse.jpg"),
)
REFERENCE = "reference"


@dataclass(frozen=True)
class Pair:
    content: Path
    style: Path

    @property
    def name(self) -> str:
        return f"{self.content.stem} / {self.style.stem}"


def default_pairs(shared: Path = SHARED_IMAGES, *, every_combination: bool = False) -> list[Pair]:
    """The sample pairs from ../shared/images; an InvalidInputError if it is not there."""
    contents = sorted((shared / "content").glob("*.png"))
    styles = sorted((shared / "style").glob("*.jpg"))
    if not contents or not styles:
        raise InvalidInputError(
            f"no sample images in {shared}: name the images with --pair CONTENT STYLE"
        )
    if every_combination:
        return [Pair(c, s) for c in contents for s in styles]
    pairs = [Pair(shared / c, shared / s) for c, s in DEFAULT_PAIRS]
    return [pair for pair in pairs if pair.content.is_file() and pair.style.is_file()]


@dataclass(frozen=True)
class QualityConfig:
    pairs: tuple[Pair, ...]
    sizes: tuple[int, ...]
    presets: tuple[str, ...] = tuple(PRESETS)
    reference_factor: float = 3.0  # the reference runs `best` with this many times its steps
    strengths: tuple[float, ...] = ()  # a sweep with the normal preset; () for none
    params: StyleParams = field(default_factory=StyleParams)  # what every run starts from


@dataclass(frozen=True)
class QualityRun:
    """One engine run on one pair at one size, judged."""

    pair: str
    size: int
    label: str  # a preset, "reference", or "strength N"
    strength: float | None
    seconds: float
    steps: int
    losses: dict[str, float]
    look: Look
    gap: float | None  # the look's gap to the reference's (look.Look.gap); None: no reference
    to_reference: ColourDifference | None
    image: np.ndarray = field(repr=False, compare=False)


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    size: int
    content: np.ndarray  # at the processing size
    style: np.ndarray
    content_look: Look  # the photo itself, where every run starts
    runs: tuple[QualityRun, ...]


def reference_params(params: StyleParams, factor: float) -> StyleParams:
    """`best` with `factor` times its iterations at every scale and no early stop."""
    best = PRESETS["best"]
    return replace(
        params,
        preset="best",
        initial_iterations=round(best.initial_iterations * factor),
        iterations=round(best.iterations * factor),
        tolerance=0.0,
    )


def run_quality(
    config: QualityConfig,
    engine: StyleEngine,
    on_run: Callable[[QualityRun], None] = lambda run: None,
) -> list[PairResult]:
    """Every pair at every size: the reference first, then each preset, then the sweep."""
    engine.warm_up()
    results = []
    for pair in config.pairs:
        content_full = _rgb(load_image(pair.content, "content image"))
        style = _rgb(load_image(pair.style, "style image"))
        for size in config.sizes:
            content = at_size(content_full, size)
            results.append(_measure_pair(config, engine, pair, size, content, style, on_run))
    return results


def _measure_pair(config, engine, pair, size, content, style, on_run) -> PairResult:
    meter = LookMeter(engine.model, content, [style])
    jobs: list[tuple[str, StyleParams, float | None]] = [
        (REFERENCE, reference_params(config.params, config.reference_factor), None)
    ]
    jobs += [(name, replace(config.params, preset=name), None) for name in config.presets]
    jobs += [(f"strength {s:g}", replace(config.params, strength=s), s) for s in config.strengths]
    runs: list[QualityRun] = []
    reference: QualityRun | None = None
    for label, params, strength in jobs:
        engine.targets.clear()  # each run computes its targets, as a first job would
        log.info("%s at %d px: %s", pair.name, size, label)
        result = engine.stylize(content, [style], params)
        look = meter.measure(result.image)
        run = QualityRun(
            pair=pair.name,
            size=size,
            label=label,
            strength=strength,
            seconds=result.elapsed,
            steps=result.steps,
            losses=dict(result.losses),
            look=look,
            gap=None if reference is None else look.gap(reference.look),
            to_reference=None
            if reference is None
            else colour_difference(result.image, reference.image),
            image=result.image[..., :3],
        )
        reference = reference or run
        runs.append(run)
        on_run(run)
    return PairResult(pair, size, content, style, meter.measure(content), tuple(runs))


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., :3])


def pairs_from_args(given: Sequence[Sequence[str]] | None, every_combination: bool) -> list[Pair]:
    """`--pair CONTENT STYLE` options, else the sample pairs."""
    if not given:
        return default_pairs(every_combination=every_combination)
    return [Pair(Path(content), Path(style)) for content, style in given]
