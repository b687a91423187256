"""The VGG feature extractor's own parts: the tap through which the objective's losses see
each wanted layer."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")


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
