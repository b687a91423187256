"""A style per region (engine/regions.py, losses.StyleLoss with masks): the guided Gram loss and
its gradient against plain autograd, in tiles as whole, and jobs where each region takes its own
style and uncovered content stays. Seeded random VGG16 weights: mechanics only (the look with
the trained weights is measured in docs/quality.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_style_daemon.engine.losses import StyleLoss, gram_matrix
from neural_style_daemon.engine.optimize import Objective, layer_features, layer_grams
from neural_style_daemon.engine.params import StyleParams
from neural_style_daemon.engine.regions import layer_masks, plan_regions
from neural_style_daemon.engine.stylize import to_tensor
from neural_style_daemon.engine.tiles import TiledEvaluation
from neural_style_daemon.errors import InvalidInputError

LAYOUTS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}


def features_of(seed: int, layout: str = "nchw", shape=(1, 6, 5, 4)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(shape, generator=generator, dtype=torch.float64).relu()
    return features.contiguous(memory_format=LAYOUTS[layout])


def soft_masks(height: int, width: int) -> torch.Tensor:
    """Two overlapping soft regions, left and right, and the ramp between them: 2 x 1 x h x w."""
    ramp = torch.linspace(0, 1, width, dtype=torch.float64).expand(height, width)
    return torch.stack([1 - ramp, ramp.sqrt()])[:, None]


def plain_guided_loss(features, targets, masks) -> torch.Tensor:
    """The regions' loss written out with autograd's own backward: per region, the Gram of the
    masked features over C x the mask's mass, its relative error, weighted by the mean square."""
    channels = features.shape[1]
    total = features.new_zeros(())
    for target, mask in zip(targets, masks, strict=True):
        flat = (features * mask).reshape(channels, -1)
        mass = mask.square().sum()
        gram = flat @ flat.T / (channels * mass)
        scale = 1 / target.square().mean().item()
        total = total + mask.square().mean() * scale * (gram - target).square().mean()
    return total


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_guided_style_tap_gives_the_written_out_loss_and_gradient(layout):
    masks = soft_masks(5, 4)
    targets = torch.cat([gram_matrix(features_of(1)), gram_matrix(features_of(2))])
    loss = StyleLoss(targets, masks)
    features = features_of(3, layout).requires_grad_(True)
    from_above = torch.randn(features.shape, dtype=torch.float64)
    passed, value = loss.tap(features)
    assert torch.equal(passed, features)
    (tapped,) = torch.autograd.grad(2 * value + (passed * from_above).sum(), features)
    expected_value = plain_guided_loss(features, loss.target, loss.masks.double())
    (expected,) = torch.autograd.grad(2 * expected_value + (features * from_above).sum(), features)
    assert value.item() == pytest.approx(expected_value.item(), rel=1e-10)
    torch.testing.assert_close(tapped, expected, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda f: loss.tap(f)[1], (features,))


def test_an_all_ones_mask_is_the_unguided_loss_and_no_style_reaches_outside_a_mask():
    target = gram_matrix(features_of(4))
    features = features_of(5).requires_grad_(True)
    ones = torch.ones(1, 1, 5, 4, dtype=torch.float64)
    unguided = StyleLoss(target).tap(features)[1]
    guided = StyleLoss(target, ones).tap(features)[1]
    assert guided.item() == pytest.approx(unguided.item(), rel=1e-12)
    half = ones.clone()
    half[..., 2:] = 0
    (gradient,) = torch.autograd.grad(StyleLoss(target, half).tap(features)[1], features)
    assert gradient[..., 2:].abs().max() == 0
    assert gradient[..., :2].abs().max() > 0
    # A region with no pixels at a layer's resolution adds nothing and no NaN.
    empty = StyleLoss(torch.cat([target, target]), torch.cat([half, torch.zeros_like(half)]))
    assert empty.tap(features)[1].item() == pytest.approx(
        StyleLoss(target, half).tap(features)[1].item(), rel=1e-12
    )


def test_regions_share_the_unmasked_styles_blend_and_give_each_masked_style_its_own():
    regions = plan_regions([0.2, 0.3, 0.5], [False, True, False])
    assert [(r.styles, r.mask) for r in regions] == [((0, 2), None), ((1,), 1)]
    assert regions[0].weights == pytest.approx((0.2 / 0.7, 0.5 / 0.7))
    assert len(plan_regions([0.5, 0.5], [False, False])) == 1
    assert [r.mask for r in plan_regions([1, 1], [True, True])] == [0, 1]


def test_layer_masks_average_the_mask_over_each_features_pixels():
    mask = torch.zeros(1, 1, 64, 48)
    mask[..., :, :24] = 1
    mask[..., :, 24:28] = 0.5
    masks = layer_masks([mask, None], (48, 64), ("relu1_1", "relu3_1", "relu5_1"), mask.device)
    assert masks["relu1_1"].shape == (2, 1, 64, 48)
    assert masks["relu3_1"].shape == (2, 1, 16, 12)
    assert masks["relu5_1"].shape == (2, 1, 4, 3)
    assert masks["relu3_1"][0, 0, 0, 6].item() == pytest.approx(0.5)  # 4 px at 0.5
    assert masks["relu5_1"][0, 0, 0].tolist() == pytest.approx([1, 0.625, 0])
    assert (masks["relu5_1"][1] == 1).all()


@pytest.mark.slow
def test_a_guided_objective_in_tiles_has_the_untiled_loss_and_gradient(fp32_vgg):
    model = fp32_vgg
    height, width = 160, 136
    generator = torch.Generator().manual_seed(1)
    content = torch.rand(1, 3, height, width, generator=generator)
    styles = [torch.rand(1, 3, 96, 96, generator=generator) for _ in range(2)]
    params = StyleParams()
    ramp = torch.linspace(0, 1, width).expand(1, 1, height, width)
    region_masks = layer_masks([1 - ramp, ramp], (width, height), params.style_layers, ramp.device)
    targets = {
        name: torch.cat([layer_grams(model, s, params.style_layers)[name] for s in styles])
        for name in params.style_layers
    }
    objective = Objective(
        model,
        layer_features(model, content, params.content_layers),
        targets,
        params,
        region_masks,
    )
    image = (content + 0.1 * torch.randn(content.shape, generator=generator)).clamp(0, 1)
    whole = image.clone().requires_grad_(True)
    terms = objective(whole)
    terms.total.backward()
    tiled = image.clone().requires_grad_(True)
    tiled_terms = TiledEvaluation(objective, height, width, 64)(tiled)
    assert whole.grad is not None and tiled.grad is not None
    error = ((tiled.grad - whole.grad).norm() / whole.grad.norm()).item()
    assert error <= 1e-3, error
    expected = terms.stacked()[:3]
    got = torch.stack([t.detach().float() for t in tiled_terms])
    assert torch.allclose(got, expected, rtol=1e-3), (got, expected)


# --- jobs ------------------------------------------------------------------------------------


def _halves(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    left = np.zeros((height, width), np.uint8)
    left[:, : width // 2] = 255
    return left, 255 - left


def _style_distance(engine, image: np.ndarray, style: np.ndarray, mask: np.ndarray) -> float:
    """The relative distance of the image's Gram matrices inside `mask` to the style's, summed
    over the default style layers (the look's style measure, per region)."""
    params = StyleParams()
    model = engine.model
    height, width = image.shape[:2]
    masks = layer_masks(
        [torch.from_numpy(mask).float()[None, None] / 255],
        (width, height),
        params.style_layers,
        engine.device,
    )
    with torch.no_grad():
        inside = layer_grams(
            model, to_tensor(image, engine.device)[None], params.style_layers, masks
        )
        target = layer_grams(model, to_tensor(style, engine.device)[None], params.style_layers)
    return sum(
        ((inside[n] - target[n]).norm() / target[n].norm()).item() for n in params.style_layers
    )


@pytest.mark.slow
def test_each_region_takes_its_own_style(
    engine, make_content, make_style, make_noise_style, params
):
    content = make_content(96, 64)
    stripes, noise = make_style(64, 64), make_noise_style(64, 64)
    left, right = _halves(64, 96)
    result = engine.stylize(
        content,
        [stripes, noise],
        params(iterations=30, strength=80),
        style_masks=[left, right],
    ).image
    # Inside each half, away from the boundary, the result is nearer its own style.
    left_core, right_core = np.zeros_like(left), np.zeros_like(right)
    left_core[:, :36], right_core[:, 60:] = 255, 255
    assert _style_distance(engine, result, stripes, left_core) < 0.8 * _style_distance(
        engine, result, noise, left_core
    )
    assert _style_distance(engine, result, noise, right_core) < 0.8 * _style_distance(
        engine, result, stripes, right_core
    )


@pytest.mark.slow
def test_content_that_no_style_covers_stays_as_it_is(engine, make_content, make_style, params):
    content, style = make_content(96, 64), make_style(64, 64)
    left, _ = _halves(64, 96)
    job = params(iterations=20, strength=80)
    masked = engine.stylize(content, [style], job, style_masks=[left]).image
    whole = engine.stylize(content, [style], job).image

    def change(result: np.ndarray) -> np.ndarray:
        return np.abs(result.astype(int) - content.astype(int)).mean(axis=2)

    # The right quarter, far from the region, moves a fraction of what it does when styled.
    # (Not nothing at this size: relu5_1 sees 132 px, the whole image, from inside the region.)
    assert change(masked)[:, 72:].mean() < 0.5 * change(whole)[:, 72:].mean()
    assert change(masked)[:, :24].mean() > 0.7 * change(whole)[:, :24].mean()


@pytest.mark.slow
def test_a_source_mask_learns_the_style_from_its_part_only(engine, make_content, params):
    content = make_content(64, 64)
    style = np.zeros((64, 128, 3), np.uint8)
    style[:, :64] = (220, 40, 30)  # red on the left
    style[:, 64:] = (30, 60, 220)  # blue on the right
    left, right = _halves(64, 128)
    job = params(iterations=20, strength=90)
    red = engine.stylize(content, [style], job, style_source_masks=[left]).image
    blue = engine.stylize(content, [style], job, style_source_masks=[right]).image
    assert red[..., 0].mean() > blue[..., 0].mean() + 20
    assert blue[..., 2].mean() > red[..., 2].mean() + 20


@pytest.mark.parametrize(
    ("masks", "source_masks", "message"),
    [
        ([None, None], None, "2 style masks for 1 style images"),
        ([np.zeros((10, 10), np.uint8)], None, "style mask 1 is 10x10; the content is 48x32"),
        ([np.zeros((32, 48, 3), np.uint8)], None, "style mask 1: expected a 2-D uint8 array"),
        ([np.zeros((32, 48), np.float32)], None, "style mask 1: expected a 2-D uint8 array"),
        (None, [np.zeros((32, 48), np.uint8)], "style source mask 1 is 48x32; style image 1"),
        (None, [np.zeros((40, 40), np.uint8)], "style source mask 1 is black"),
    ],
)
def test_bad_masks_are_refused_before_any_work(
    engine, make_content, make_style, params, masks, source_masks, message
):
    with pytest.raises(InvalidInputError, match=message):
        engine.stylize(
            make_content(48, 32),
            [make_style(40, 40)],
            params(),
            style_masks=masks,
            style_source_masks=source_masks,
        )
