"""Tiled evaluation (engine/tiles.py): with the default halo, the loss and the image gradient
are the untiled ones; the tiles cover the image once on the pooling grid; a tiled job runs
through the engine like any other. Seeded random VGG16 weights in fp32: mechanics only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_style_daemon.engine.optimize import Objective, layer_features, layer_grams
from neural_style_daemon.engine.params import StyleParams
from neural_style_daemon.engine.tiles import (
    ALIGN,
    TiledEvaluation,
    evaluated_pixels,
    plan_tiles,
    tiled_features,
    tiled_grams,
)
from neural_style_daemon.errors import InvalidInputError

HEIGHT, WIDTH = 200, 168  # neither a multiple of the tile nor of ALIGN


@pytest.fixture(scope="module")
def objective_and_image(fp32_vgg):
    generator = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    style = torch.rand(1, 3, 128, 128, generator=generator)
    params = StyleParams()
    objective = Objective(
        fp32_vgg,
        layer_features(fp32_vgg, content, params.content_layers),
        layer_grams(fp32_vgg, style, params.style_layers),
        params,
    )
    noise = 0.1 * torch.randn(content.shape, generator=generator)
    return objective, (content + noise).clamp(0, 1)


def _untiled(objective, image):
    image = image.clone().requires_grad_(True)
    terms = objective(image)
    terms.total.backward()
    return terms.stacked()[:3], image.grad


def _tiled(objective, image, tile, halo=None):
    image = image.clone().requires_grad_(True)
    options = {} if halo is None else {"halo": halo}
    evaluation = TiledEvaluation(objective, HEIGHT, WIDTH, tile, **options)
    terms = torch.stack([t.detach().float() for t in evaluation(image)])
    return terms, image.grad, len(evaluation.tiles)


@pytest.mark.slow
def test_the_tiled_gradient_and_loss_are_the_untiled_ones(objective_and_image):
    objective, image = objective_and_image
    terms, gradient = _untiled(objective, image)
    tiled_terms, tiled_gradient, count = _tiled(objective, image, 64)
    assert count == 12
    error = ((tiled_gradient - gradient).norm() / gradient.norm()).item()
    assert error <= 1e-4, error
    assert torch.allclose(tiled_terms, terms, rtol=1e-5)
    # A halo narrower than the receptive field is visibly wrong: the halo is what makes it exact.
    _, narrow_gradient, _ = _tiled(objective, image, 64, halo=32)
    assert ((narrow_gradient - gradient).norm() / gradient.norm()).item() > 1e-2


@pytest.mark.slow
def test_targets_computed_in_tiles_are_the_untiled_ones(fp32_vgg):
    generator = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    tiles = plan_tiles(HEIGHT, WIDTH, 80)
    layers = ("relu1_1", "relu3_1", "relu4_2", "relu5_1")
    whole = layer_features(fp32_vgg, image, layers)
    for name, features in tiled_features(fp32_vgg, image, layers, tiles).items():
        assert features.shape == whole[name].shape
        assert torch.allclose(features, whole[name], rtol=1e-4, atol=1e-5), name
    whole_grams = layer_grams(fp32_vgg, image, layers)
    for name, gram in tiled_grams(fp32_vgg, image, layers, tiles).items():
        assert torch.allclose(gram, whole_grams[name], rtol=1e-4, atol=1e-7), name


@pytest.mark.parametrize(
    ("height", "width", "tile"), [(200, 168, 64), (97, 61, 64), (33, 500, 100)]
)
def test_the_cores_cover_the_image_once_on_the_pooling_grid(height, width, tile):
    tiles = plan_tiles(height, width, tile, halo=70)
    covered = np.zeros((height, width), int)
    for t in tiles:
        covered[t.top : t.bottom, t.left : t.right] += 1
        for edge, end in ((t.top, height), (t.bottom, height), (t.left, width), (t.right, width)):
            assert edge % ALIGN == 0 or edge == end
        assert t.box_top == max(0, t.top - 80) and t.box_right == min(width, t.right + 80)
        assert t.box_top % ALIGN == 0 and t.box_left % ALIGN == 0
        # No sliver: a core is at least half a tile unless the image is smaller.
        assert t.bottom - t.top >= min(height, tile // 2 - ALIGN)
    assert (covered == 1).all()


def test_a_tiled_job_ends_with_the_untiled_jobs_loss_and_no_seam(
    engine, make_content, make_style, params
):
    content, style = make_content(144, 112), make_style(64, 64)
    untiled = engine.stylize(content, [style], params(iterations=4))
    tiled = engine.stylize(content, [style], params(iterations=4, tile_size=64))
    assert tiled.image.shape == untiled.image.shape == content.shape
    for term in ("content", "style", "total"):
        assert tiled.losses[term] == pytest.approx(untiled.losses[term], rel=0.05), term
    # No seam: the steps across the tile boundaries (row 64, columns 48 and 96, away from the
    # picture's own edges) stand out from their neighbours as much as in the untiled result.
    # Without a halo they would stand out about half as much: a band of weaker strokes.
    with_tiles, whole = (r.image[..., :3].astype(float) for r in (tiled, untiled))
    for axis, boundary in ((0, 64), (1, 48), (1, 96)):
        ratio = _stand_out(with_tiles, axis, boundary) / _stand_out(whole, axis, boundary)
        assert abs(ratio - 1) <= 0.1, (axis, boundary, ratio)


def _stand_out(image: np.ndarray, axis: int, at: int) -> float:
    """The mean step between rows (axis 0) or columns (1) at-1 and at, against the median of
    the five steps on either side."""
    steps = np.abs(np.diff(image, axis=axis)).mean(axis=tuple(i for i in range(3) if i != axis))
    step = at - 1
    neighbours = np.r_[steps[step - 6 : step - 1], steps[step + 2 : step + 7]]
    return float(steps[step] / np.median(neighbours))


def test_a_tile_size_below_what_the_network_needs_is_refused():
    with pytest.raises(InvalidInputError, match="tile_size must be a finite number in"):
        StyleParams(tile_size=16)


def test_a_tiled_step_reports_each_tile_and_a_cancel_stops_it_mid_step(
    engine, make_content, make_style, params, progress_log
):
    progress_log.cancel_after = 6  # four tiles and the end of step 1, then step 2's first tile
    result = engine.stylize(
        make_content(320, 160),
        [make_style(64, 64)],
        params(iterations=4, tile_size=160),
        on_progress=progress_log,
        should_cancel=progress_log.should_cancel,
    )
    tiles = [(r.iteration, r.tile, r.tiles) for r in progress_log.reports]
    # Two tiles, each visited twice a step, then the step's own report; step 2 stops after its
    # first tile.
    assert tiles == [(1, 1, 4), (1, 2, 4), (1, 3, 4), (1, 4, 4), (1, 0, 0), (2, 1, 4)]
    fractions = [r.work_done for r in progress_log.reports]
    assert fractions == sorted(fractions) and fractions[4] == pytest.approx(1 / 4)
    assert result.cancelled and result.steps == 1  # the best image of the steps done
    assert result.image.shape == (160, 320, 3)


def test_a_tiled_step_costs_its_boxes_over_both_passes_in_the_progress():
    assert evaluated_pixels(640, 480, None) == 640 * 480
    assert evaluated_pixels(640, 480, 1024) == 640 * 480  # one tile: whole
    boxes = sum(
        (t.box_bottom - t.box_top) * (t.box_right - t.box_left) for t in plan_tiles(480, 640, 256)
    )
    assert boxes > 640 * 480  # the halos
    assert evaluated_pixels(640, 480, 256) == pytest.approx(boxes * 4 / 3)
