"""The regions measurement (bench/regions.py) and the look inside a region (look.py), on tiny
images with random weights: the mechanics only. The figures with the trained weights are in
docs/quality.md."""

from __future__ import annotations

import numpy as np
import pytest

from measure.regions import run, seam_ratio
from neural_style_daemon.bench.look import LookMeter


def _left_half(height: int, width: int, edge: float = 0.5) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[:, : round(width * edge)] = 255
    return mask


def test_a_cut_between_two_pictures_shows_as_a_seam_and_a_smooth_one_does_not(
    make_content, make_style, make_noise_style
):
    mask = _left_half(40, 48, edge=1 / 3)  # not on an edge of the synthetic photo
    stripes, noise = make_style(48, 40), make_noise_style(48, 40)
    cut = np.where((mask >= 128)[..., None], stripes, noise)
    smooth = make_content(48, 40)
    assert seam_ratio(smooth, mask) < 1.5
    # The stripes' own steps are large: a cut to noise still stands out against them.
    assert seam_ratio(cut, mask) > seam_ratio(smooth, mask)
    with pytest.raises(ValueError, match="no edge"):
        seam_ratio(smooth, np.full((40, 48), 255, np.uint8))


def test_the_look_inside_a_region_is_that_regions_own(engine, make_style, make_noise_style):
    mask = _left_half(80, 96)
    stripes, noise = make_style(96, 80), make_noise_style(96, 80)
    halves = np.where((mask >= 128)[..., None], stripes, noise)
    meter = LookMeter(engine.model, halves, [stripes])
    # Inside the stripes' half, the image is nearer the stripes than it is as a whole.
    assert meter.measure(halves, mask).style < 0.7 * meter.measure(halves).style
    assert meter.measure(halves, mask).content == 0.0


@pytest.mark.slow
def test_the_regions_run_judges_each_job(
    engine, make_content, make_style, make_noise_style, params
):
    content = make_content(64, 48)
    mask = _left_half(48, 64)
    looks, images = run(
        engine, content, (make_style(48, 48), make_noise_style(48, 48)), mask, params(iterations=8)
    )
    assert set(looks) == {"regions", "cut", "one region", "first style whole"}
    assert images["cut"].shape == content.shape
    regions = looks["regions"]
    assert regions.first_region_to_first_style < regions.first_region_to_second_style
    assert regions.rest_to_second_style < regions.rest_to_first_style
    # The rest of the one-region job took no style: nearer the content than the whole job's.
    assert looks["one region"].rest_content < looks["first style whole"].rest_content
