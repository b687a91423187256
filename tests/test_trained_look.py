"""What the user sees, checked on the trained VGG16 beside the repository
(../shared/weights/vgg16-features.pth) and the sample pictures (../shared/images): the style
knob, colour preservation, the stroke size and the plateau stop, judged by the look's measures
(bench/look.py) at small sizes. Random weights cannot show any of this; without the files the
tests skip and say why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_style_daemon.bench.inputs import at_size
from neural_style_daemon.bench.look import LookMeter, stroke_frequency
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.color import rgb_to_yiq
from neural_style_daemon.engine.optimize import PLATEAU_WINDOW
from neural_style_daemon.engine.params import PRESETS
from neural_style_daemon.engine.stylize import StyleEngine, to_tensor
from neural_style_daemon.imageio import load_image

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = SHARED / "weights" / "vgg16-features.pth"
IMAGES = SHARED / "images"
SIZE = 128
# A hundred steps of the quick preset show which way each knob moves the look.
QUICK = StyleParams(preset="draft", initial_iterations=100)

NEEDS_TRAINED = pytest.mark.skipif(
    not (WEIGHTS.is_file() and (IMAGES / "content").is_dir()),
    reason=f"the trained VGG16 and the sample pictures are not beside the repository ({SHARED})",
)
pytestmark = [pytest.mark.slow, NEEDS_TRAINED]


@pytest.fixture(scope="module")
def trained() -> StyleEngine:
    return StyleEngine(str(WEIGHTS), "cpu")


def picture(name: str, size: int | None = None) -> np.ndarray:
    image = load_image(IMAGES / name)[..., :3]
    return image if size is None else at_size(image, size)


@pytest.fixture(scope="module")
def cat() -> np.ndarray:
    return picture("content/chelsea.png", SIZE)


@pytest.fixture(scope="module")
def starry_night() -> np.ndarray:
    return picture("style/starry_night.jpg")


@pytest.fixture(scope="module")
def quick_result(trained, cat, starry_night) -> np.ndarray:
    """The cat in The Starry Night with QUICK at the default strength: two tests judge it."""
    return trained.stylize(cat, [starry_night], QUICK).image


def test_a_higher_strength_ends_nearer_the_style_and_farther_from_the_photo(
    trained, cat, starry_night, quick_result
):
    assert QUICK.strength == 50
    meter = LookMeter(trained.model, cat, [starry_night])

    def at(strength: float) -> np.ndarray:
        return trained.stylize(cat, [starry_night], replace(QUICK, strength=strength)).image

    looks = [meter.measure(image) for image in (at(25), quick_result, at(75))]
    styles, contents = [look.style for look in looks], [look.content for look in looks]
    assert styles == sorted(styles, reverse=True) and len(set(styles)) == 3, styles
    assert contents == sorted(contents) and len(set(contents)) == 3, contents


def test_luminance_preservation_keeps_the_photos_chroma(trained, cat, starry_night, quick_result):
    def chroma(image: np.ndarray) -> torch.Tensor:
        return rgb_to_yiq(to_tensor(image, torch.device("cpu")))[1:]

    kept = trained.stylize(cat, [starry_night], replace(QUICK, preserve_colors="luminance"))
    photo = chroma(cat)
    kept_error = (chroma(kept.image) - photo).abs().mean().item()
    plain_error = (chroma(quick_result) - photo).abs().mean().item()
    assert kept_error < 0.01  # 8-bit rounding and the clamp to [0, 1]
    assert plain_error > 4 * kept_error
    luma = [rgb_to_yiq(to_tensor(im, torch.device("cpu")))[0] for im in (kept.image, cat)]
    assert (luma[0] - luma[1]).abs().mean().item() > 0.03  # the brightness was stylised


def test_a_larger_style_scale_gives_larger_strokes(trained, cat, starry_night):
    # From noise the picture is strokes through and through; from the photo, at 128 px, what
    # the stylisation adds follows the photo's own edges, and in fp32 (a CPU without bf16) the
    # measure did not move with the scale.
    frequencies = [
        stroke_frequency(
            trained.stylize(
                cat, [starry_night], replace(QUICK, style_scale=scale, init="noise")
            ).image,
            cat,
        )
        for scale in (0.5, 2.0)
    ]
    assert frequencies[1] < 0.85 * frequencies[0], frequencies


def test_the_plateau_stop_waits_until_the_look_stops_changing(trained, cat, starry_night):
    """Where the draft preset stops, going on for twice as many steps moves the look by less
    than the preset's promise to a long reference (5 %)."""
    meter = LookMeter(trained.model, cat, [starry_night])
    draft = StyleParams(preset="draft")
    stopped = trained.stylize(cat, [starry_night], draft)
    tolerance = PRESETS["draft"].tolerance
    assert PLATEAU_WINDOW < stopped.steps < PRESETS["draft"].initial_iterations
    longer = trained.stylize(
        cat, [starry_night], replace(draft, initial_iterations=2 * stopped.steps, tolerance=0.0)
    )
    assert longer.steps == 2 * stopped.steps
    gap = meter.measure(stopped.image).gap(meter.measure(longer.image))
    assert gap < 0.05, f"stopped at step {stopped.steps} (tolerance {tolerance}), gap {gap:.3f}"
