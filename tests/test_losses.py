"""The loss modules against NumPy references, and the objective at its known minima."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neural_style_daemon.engine import StyleParams, losses
from neural_style_daemon.engine.losses import (
    ContentLoss,
    StyleLoss,
    gram_matrix,
    total_variation,
)
from neural_style_daemon.engine.optimize import (
    LossTerms,
    Objective,
    fast_math,
    layer_features,
    layer_grams,
    term_floats,
)
from neural_style_daemon.engine.stylize import to_tensor


def numpy_gram(features: np.ndarray) -> np.ndarray:
    """N x C x C Gram matrices of N x C x H x W features, normalised by C x H x W."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w).astype(np.float64)
    return np.einsum("ncp,ndp->ncd", flat, flat) / (c * h * w)


@pytest.fixture
def features() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return torch.randn(2, 5, 7, 3, generator=generator).relu()


def test_gram_matrix_matches_numpy(features):
    expected = numpy_gram(features.numpy())
    np.testing.assert_allclose(gram_matrix(features).numpy(), expected, rtol=1e-5, atol=1e-7)


def test_gram_matrix_is_symmetric_and_positive_semidefinite(features):
    gram = gram_matrix(features).double()
    torch.testing.assert_close(gram, gram.transpose(1, 2))
    assert torch.linalg.eigvalsh(gram).min() > -1e-10


def test_gram_matrix_of_bfloat16_features_is_float32_within_one_bf16_rounding(features):
    # Multiplied in bf16 with fp32 accumulation: only the result is rounded to bf16 (8 bits of
    # mantissa), so each entry is within 2^-8 of the exact product of the bf16 values.
    gram = gram_matrix(features.bfloat16())
    assert gram.dtype == torch.float32
    expected = numpy_gram(features.bfloat16().float().numpy())
    np.testing.assert_allclose(
        gram.numpy(), expected, rtol=2**-8, atol=1e-3 * np.abs(expected).max()
    )


LAYOUTS = {"nchw": torch.contiguous_format, "channels-last": torch.channels_last}


def fp64_features(layout: str, seed: int) -> torch.Tensor:
    """One image's fp64 features in one of the layouts the network produces."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 6, 5, 4, generator=generator, dtype=torch.float64).relu()
    return features.contiguous(memory_format=LAYOUTS[layout])


@pytest.fixture(params=list(LAYOUTS))
def one_image_features(request) -> torch.Tensor:
    """The engine's case: one image's features, in either layout the network produces."""
    return fp64_features(request.param, seed=12)


def test_gram_matrix_of_one_image_matches_numpy(one_image_features):
    expected = numpy_gram(one_image_features.numpy())
    np.testing.assert_allclose(gram_matrix(one_image_features).numpy(), expected, rtol=1e-6)


def test_gram_matrix_of_one_image_in_bfloat16_is_within_its_rounding(one_image_features):
    gram = gram_matrix(one_image_features.bfloat16())
    expected = gram_matrix(one_image_features.bfloat16().double())
    torch.testing.assert_close(gram.double(), expected, rtol=2**-8, atol=1e-3)


def tapped_loss(loss: ContentLoss | StyleLoss, features: torch.Tensor) -> float:
    """The loss's value as a job takes it: through its tap."""
    return loss.tap(features)[1].item()


@pytest.fixture
def one_image(features) -> torch.Tensor:
    """One image's fp32 features (the taps take one image, as the engine runs)."""
    return features[:1]


def test_content_loss_is_zero_at_its_target_and_positive_elsewhere(one_image):
    loss = ContentLoss(one_image)
    assert tapped_loss(loss, one_image) == 0.0
    assert tapped_loss(loss, one_image + 0.1) > 0


def test_content_loss_is_relative_to_the_targets_scale(one_image):
    other = one_image.flip(-1)
    # The departure from the paper: scaling target and features alike leaves the loss as it is.
    scaled = tapped_loss(ContentLoss(100 * one_image), 100 * other)
    assert scaled == pytest.approx(tapped_loss(ContentLoss(one_image), other), rel=1e-5)
    mse = ((one_image - other) ** 2).mean() / (one_image**2).mean()
    assert tapped_loss(ContentLoss(one_image), other) == pytest.approx(mse.item(), rel=1e-5)


def test_style_loss_is_zero_at_features_with_the_target_gram(one_image):
    loss = StyleLoss(gram_matrix(one_image))
    assert tapped_loss(loss, one_image) == 0.0
    # A permutation of pixels keeps the Gram matrix: the style loss ignores layout.
    shuffled = one_image.flatten(2)[..., torch.randperm(21)].reshape(one_image.shape)
    assert tapped_loss(loss, shuffled) == pytest.approx(0.0, abs=1e-10)
    assert tapped_loss(loss, 2 * one_image) > 0


def test_style_loss_matches_a_numpy_reference(one_image):
    other = one_image.roll(1, dims=1)
    target = numpy_gram(one_image.numpy())
    got = numpy_gram(other.numpy())
    expected = ((got - target) ** 2).mean() / (target**2).mean()
    loss = StyleLoss(gram_matrix(one_image))
    assert tapped_loss(loss, other) == pytest.approx(expected, rel=1e-4)


# --- the losses' taps: the same loss and gradient, taken when the backward pass gets there --------


def loss_for(kind: str, target_features: torch.Tensor) -> ContentLoss | StyleLoss:
    return (
        ContentLoss(target_features)
        if kind == "content"
        else StyleLoss(gram_matrix(target_features))
    )


def plain_loss(loss: ContentLoss | StyleLoss, features: torch.Tensor) -> torch.Tensor:
    """The loss as one autograd branch, the taps' reference: the relative mean squared error
    of the features (content) or of their Gram matrix (style), through autograd's own
    backward."""
    if isinstance(loss, ContentLoss):
        return F.mse_loss(features.float(), loss.target) * loss.scale
    flat = features.reshape(features.shape[1], -1)
    gram = (flat @ flat.T)[None] / features[0].numel()
    return F.mse_loss(gram, loss.target.to(gram.dtype)) * loss.scale


@pytest.mark.parametrize("kind", ["content", "style"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_a_loss_tap_passes_the_features_on_and_gives_the_losses_value_and_gradient(kind, layout):
    loss = loss_for(kind, fp64_features(layout, seed=1))
    features = fp64_features(layout, seed=2).requires_grad_(True)
    from_above = torch.randn(
        features.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)
    )
    passed, value = loss.tap(features)
    # The next layer gets the same values in the same layout (channels-last stays so).
    assert torch.equal(passed, features) and passed.stride() == features.stride()
    (tapped,) = torch.autograd.grad(3 * value + (passed * from_above).sum(), features)
    expected_value = plain_loss(loss, features)
    (expected,) = torch.autograd.grad(3 * expected_value + (features * from_above).sum(), features)
    # The content loss runs in fp32 whatever the features' precision, in another order here.
    rtol = 1e-6 if kind == "content" else 1e-10
    assert value.item() == pytest.approx(expected_value.item(), rel=rtol)
    torch.testing.assert_close(tapped, expected, rtol=rtol, atol=rtol * expected.abs().max().item())
    assert tapped.is_contiguous(memory_format=LAYOUTS[layout])


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_style_taps_gradient_matches_finite_differences(layout):
    """(The content loss runs in fp32, too coarse for finite differences: its tap is held to
    autograd's gradient of the loss above.)"""
    loss = StyleLoss(gram_matrix(fp64_features(layout, seed=4)))
    features = fp64_features(layout, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(loss.tap, (features,))


def test_a_loss_tap_at_the_last_layer_gives_the_loss_gradient_alone():
    loss = StyleLoss(gram_matrix(fp64_features("channels-last", seed=6)))
    features = fp64_features("channels-last", seed=7).requires_grad_(True)
    _, value = loss.tap(features)  # nothing above uses the passed features
    (tapped,) = torch.autograd.grad(value, features)
    (expected,) = torch.autograd.grad(plain_loss(loss, features), features)
    torch.testing.assert_close(tapped, expected, rtol=1e-10, atol=1e-12)


def test_a_loss_taps_bfloat16_gradient_is_within_its_rounding():
    target = fp64_features("channels-last", seed=8)
    features = fp64_features("channels-last", seed=9)
    from_above = torch.randn(
        features.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(10)
    )
    exact_features = features.clone().requires_grad_(True)
    exact = torch.autograd.grad(
        plain_loss(StyleLoss(gram_matrix(target)), exact_features)
        + (exact_features * from_above).sum(),
        exact_features,
    )[0]
    rounded = features.bfloat16().requires_grad_(True)
    passed, value = StyleLoss(gram_matrix(target.bfloat16())).tap(rounded)
    (gradient,) = torch.autograd.grad(
        value + (passed * from_above.bfloat16()).float().sum(), rounded
    )
    assert gradient.dtype == torch.bfloat16
    torch.testing.assert_close(
        gradient.double(), exact, rtol=2**-6, atol=2**-6 * exact.abs().max().item()
    )


def test_total_variation_matches_numpy_and_is_zero_for_a_flat_image():
    image = torch.rand(1, 3, 9, 13, generator=torch.Generator().manual_seed(3))
    array = image.numpy().astype(np.float64)
    expected = (np.diff(array, axis=3) ** 2).mean() + (np.diff(array, axis=2) ** 2).mean()
    assert total_variation(image).item() == pytest.approx(expected, rel=1e-5)
    assert total_variation(torch.full((1, 3, 9, 13), 0.4)).item() == 0.0


def test_loss_terms_total_is_the_sum_of_the_parts():
    terms = LossTerms(torch.tensor(1.5), torch.tensor(2.25), torch.tensor(0.125))
    assert floats(terms) == {"content": 1.5, "style": 2.25, "tv": 0.125, "total": 3.875}


# --- the objective with VGG16 (random weights) ---------------------------------------------------


def objective_for(engine, content: torch.Tensor, style: torch.Tensor, **changes) -> Objective:
    params = StyleParams(**changes)
    model = engine.model
    return Objective(
        model,
        layer_features(model, content[None], params.content_layers),
        layer_grams(model, style[None], params.style_layers),
        params,
    )


def floats(terms: LossTerms) -> dict[str, float]:
    return term_floats(terms.stacked().tolist())


def tensor(image: np.ndarray) -> torch.Tensor:
    return to_tensor(image, torch.device("cpu"))


def evaluate(objective: Objective, image: torch.Tensor):
    """The objective's terms at `image`, in the precision the engine evaluates it in (bf16 on a
    CPU with bf16 units, like the targets)."""
    with fast_math(objective.model):
        return objective(image[None])


def test_content_loss_is_zero_at_the_content_image(engine, make_content, make_style):
    content = tensor(make_content(40, 32))
    objective = objective_for(
        engine, content, tensor(make_style(40, 32)), content_layers=("relu2_2", "relu4_2")
    )
    terms = evaluate(objective, content)
    assert terms.content.item() == pytest.approx(0.0, abs=1e-9)
    assert terms.style.item() > 0
    assert evaluate(objective, tensor(make_content(40, 32, seed=9))).content.item() > 0


def test_style_loss_is_zero_at_the_style_image(engine, make_content, make_style):
    style = tensor(make_style(40, 32))
    objective = objective_for(engine, tensor(make_content(40, 32)), style, style_layers="all")
    assert evaluate(objective, style).style.item() == pytest.approx(0.0, abs=1e-9)


def test_objective_weights_scale_their_terms(engine, make_content, make_style):
    content, style = tensor(make_content(32, 32)), tensor(make_style(32, 32))
    image = tensor(make_content(32, 32, seed=4))[None]
    base = floats(objective_for(engine, content, style, style_weight=1.0)(image))
    heavy = floats(
        objective_for(engine, content, style, style_weight=10.0, content_weight=3.0, tv_weight=0.5)(
            image
        )
    )
    assert heavy["style"] == pytest.approx(10 * base["style"], rel=1e-5)
    assert heavy["content"] == pytest.approx(3 * base["content"], rel=1e-5)
    assert heavy["tv"] == pytest.approx(0.5 * base["tv"], rel=1e-5)


def test_objective_gradient_with_the_taps_is_the_losses_own_gradient(
    engine, make_content, make_style
):
    """fp32 throughout, so that the two orders of summation agree to rounding."""
    content, style = tensor(make_content(40, 32)), tensor(make_style(40, 32))
    objective = objective_for(engine, content, style, style_layers="all")
    image = tensor(make_content(40, 32, seed=6))[None].requires_grad_(True)
    (tapped,) = torch.autograd.grad(objective(image).total, image)
    features = engine.model(image, objective.layers)
    plain = objective.content_weight * sum(
        plain_loss(loss, features[name]) for name, loss in objective.content_losses.items()
    )
    plain = plain + objective.style_weight * sum(
        objective.style_layer_weights[name] * plain_loss(loss, features[name])
        for name, loss in objective.style_losses.items()
    )
    plain = plain + objective.tv_weight * total_variation(image)
    (expected,) = torch.autograd.grad(plain, image)
    torch.testing.assert_close(tapped, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_each_style_layers_gradient_is_summed_into_the_gradient_from_above(
    engine, make_content, make_style, monkeypatch
):
    """The memory saving: no loss gradient is made before the backward pass reaches its layer,
    where the gradient from the layers above is already there to be added to."""
    given_from_above = []
    features_gradient = losses._features_gradient

    def spy(features, grad_gram, passed=None):
        given_from_above.append((features.shape[1], passed is not None))
        return features_gradient(features, grad_gram, passed)

    monkeypatch.setattr(losses, "_features_gradient", spy)
    objective = objective_for(engine, tensor(make_content(48, 48)), tensor(make_style(48, 48)))
    image = tensor(make_content(48, 48, seed=2))[None].requires_grad_(True)
    with fast_math(engine.model):
        total = objective(image).total
    total.backward()
    # relu5_1 down to relu1_1; only the deepest style layer has nothing above it.
    assert given_from_above == [(512, False), (512, True), (256, True), (128, True), (64, True)]
