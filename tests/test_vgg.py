"""The VGG feature extractor's own parts: the max-pool that finds its maxima again in the
backward pass, and the tap through which the objective's losses see each wanted layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neural_style_daemon.engine import vgg
from neural_style_daemon.engine.vgg import MaxPool

pytestmark = pytest.mark.usefixtures("one_thread")


def relu_like_bf16(height: int, width: int, seed: int) -> torch.Tensor:
    """Channels-last bf16 activations as a ReLU leaves them: a third exactly zero, and values
    coarse enough that a window often holds two equal maxima."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(-2, 6, (1, 8, height, width), generator=generator).float().relu()
    return values.bfloat16().contiguous(memory_format=torch.channels_last)


def saved_dtypes(run) -> list[torch.dtype]:
    """The dtypes of what autograd keeps for the backward pass while `run()` builds its graph."""
    dtypes = []

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        dtypes.append(tensor.dtype)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        run()
    return dtypes


@pytest.mark.parametrize("size", [(12, 16), (7, 9)])
def test_max_pool_that_finds_its_maxima_again_gives_the_same_gradient(monkeypatch, size):
    monkeypatch.setattr(vgg, "MAX_KEPT_POOL_INDICES_BYTES", 0)
    x = relu_like_bf16(*size, seed=1).requires_grad_(True)
    from_above = torch.randn(1, 8, size[0] // 2, size[1] // 2).bfloat16()
    pooled = MaxPool()(x)
    expected = F.max_pool2d(x, kernel_size=2, stride=2)
    assert torch.equal(pooled, expected)
    assert pooled.is_contiguous(memory_format=torch.channels_last)
    (gradient,) = torch.autograd.grad(pooled, x, from_above)
    (expected_gradient,) = torch.autograd.grad(expected, x, from_above)
    # Ties go to the same position: the gradient is the same to the bit.
    assert torch.equal(gradient, expected_gradient)


def test_max_pool_keeps_its_indices_only_below_the_limit(monkeypatch):
    x = relu_like_bf16(16, 16, seed=2).requires_grad_(True)
    indices_bytes = 8 * 8 * 8 * 8  # int64, one per output value
    monkeypatch.setattr(vgg, "MAX_KEPT_POOL_INDICES_BYTES", indices_bytes)
    assert torch.int64 in saved_dtypes(lambda: MaxPool()(x))
    monkeypatch.setattr(vgg, "MAX_KEPT_POOL_INDICES_BYTES", indices_bytes - 1)
    assert saved_dtypes(lambda: MaxPool()(x)) == [torch.bfloat16]  # only its input


def test_the_tap_sees_each_wanted_layer_in_order_and_the_next_layer_gets_what_it_returns(engine):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    seen = []

    def double_relu1_1(name: str, features: torch.Tensor) -> torch.Tensor:
        seen.append(name)
        return 2 * features if name == "relu1_1" else features

    wanted = ("relu2_1", "relu1_1")
    plain = engine.model(image, wanted)
    tapped = engine.model(image, wanted, tap=double_relu1_1)
    assert seen == ["relu1_1", "relu2_1"]
    torch.testing.assert_close(tapped["relu1_1"], 2 * plain["relu1_1"])
    assert not torch.allclose(tapped["relu2_1"], plain["relu2_1"])
