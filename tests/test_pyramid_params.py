"""The pyramid's ladder of sizes, and StyleParams: presets, layer sets, strength, validation."""

from __future__ import annotations

import itertools
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neural_style_daemon.engine import PRESETS, STYLE_LAYER_SETS, StyleParams
from neural_style_daemon.engine.layers import relu_names
from neural_style_daemon.engine.params import MIN_SIDE, strength_to_style_weight
from neural_style_daemon.engine.pyramid import pyramid_sizes, scaled_size
from neural_style_daemon.errors import InvalidInputError

# --- pyramid -------------------------------------------------------------------------------------


def test_scaled_size_sets_the_long_side_and_keeps_the_aspect_ratio():
    assert scaled_size(1000, 500, 300) == (300, 150)
    assert scaled_size(61, 97, 48) == (30, 48)
    assert scaled_size(4, 3, 4) == (4, 3)


def test_pyramid_is_a_sqrt2_ladder_from_about_min_size_to_the_target():
    sizes = pyramid_sizes(1024, 768, 1024, 128)
    long_sides = [max(size) for size in sizes]
    assert sizes[-1] == (1024, 768)
    assert 128 <= long_sides[0] < 128 * math.sqrt(2)
    assert len(sizes) == 7  # 1024 / sqrt(2)^6 = 128
    for smaller, larger in itertools.pairwise(long_sides):
        assert larger / smaller == pytest.approx(math.sqrt(2), abs=0.02)


def test_pyramid_ends_exactly_at_an_odd_target():
    assert pyramid_sizes(97, 61, 97, 32)[-1] == (97, 61)
    assert pyramid_sizes(970, 610, 97, 32)[-1] == (97, 61)


@pytest.mark.parametrize(("long_side", "min_size"), [(128, 128), (100, 128), (150, 128)])
def test_pyramid_has_a_single_scale_for_small_targets(long_side, min_size):
    sizes = pyramid_sizes(400, 300, long_side, min_size)
    assert sizes == [scaled_size(400, 300, long_side)]


def test_pyramid_skips_scales_too_thin_for_vgg():
    sizes = pyramid_sizes(2000, 80, 1000, 128)
    assert sizes == [(500, 20), (707, 28), (1000, 40)]  # not (177, 7), (250, 10), (354, 14)


@given(
    width=st.integers(16, 3000),
    height=st.integers(16, 3000),
    long_side=st.integers(16, 2048),
    min_size=st.integers(16, 512),
)
def test_pyramid_properties(width, height, long_side, min_size):
    sizes = pyramid_sizes(width, height, long_side, min_size)
    target = scaled_size(width, height, long_side)
    assert sizes[-1] == target
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(sizes))
    if len(sizes) > 1:
        assert all(min(size) >= MIN_SIDE for size in sizes)
        assert max(sizes[0]) >= min_size - 1
    if long_side <= min_size:
        assert len(sizes) == 1


# --- presets, layer sets and strength ------------------------------------------------------------


def test_presets_get_more_work_from_draft_to_best():
    draft, normal, best = PRESETS["draft"], PRESETS["normal"], PRESETS["best"]
    assert draft.initial_iterations < normal.initial_iterations < best.initial_iterations
    assert draft.iterations < normal.iterations < best.iterations


def test_the_all_layer_set_has_the_13_relu_layers_shallow_to_deep():
    assert len(STYLE_LAYER_SETS["all"]) == 13
    assert STYLE_LAYER_SETS["all"] == tuple(relu_names("vgg16"))
    assert StyleParams(style_layers="all").style_layers == STYLE_LAYER_SETS["all"]


def test_style_layers_accept_a_comma_separated_list():
    params = StyleParams(style_layers="relu1_1, relu3_2,relu5_3")
    assert params.style_layers == ("relu1_1", "relu3_2", "relu5_3")


@pytest.mark.parametrize("strength, weight", [(0, 0.1), (25, 1), (50, 10), (75, 100), (100, 1000)])
def test_strength_is_a_percentage_on_a_log_scale_of_style_weights(strength, weight):
    assert StyleParams(strength=strength).resolved_style_weight == pytest.approx(weight)


def test_strength_maps_monotonically_from_content_to_style():
    weights = [strength_to_style_weight(s) for s in (0.0, 0.5, 1.0, 1.5, 20, 50, 80, 100)]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)
    assert weights[0] < 1 < weights[-1]  # content dominates at 0, style at 100


def test_style_weight_overrides_strength():
    assert StyleParams(strength=90, style_weight=3.0).resolved_style_weight == 3.0


def test_with_overrides_ignores_none():
    params = StyleParams(size=256).with_overrides(size=None, iterations=7)
    assert (params.size, params.iterations) == (256, 7)


def test_enum_options_accept_their_string_values():
    params = StyleParams(optimizer="adam", preserve_colors="histogram", init="noise")
    assert (params.optimizer.value, params.preserve_colors.value, params.init.value) == (
        "adam",
        "histogram",
        "noise",
    )


# --- validation ----------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"strength": NAN}, "strength"),
        ({"content_weight": NAN}, "content_weight"),
        ({"style_weight": INF}, "style_weight"),
        ({"tv_weight": NAN}, "tv_weight"),
        ({"learning_rate": NAN}, "learning_rate"),
        ({"content_weight": -1.0}, "content_weight"),
        ({"style_weight": -0.5}, "style_weight"),
        ({"tv_weight": -1e-3}, "tv_weight"),
        ({"strength": -0.1}, "strength"),
        ({"strength": 100.5}, "strength"),
        ({"strength": True}, "strength must be a number"),
        ({"style_scale": 0.0}, "style_scale"),
        ({"size": 8}, "size"),
        ({"size": 10_000}, "size"),
        ({"min_size": 4}, "min_size"),
        ({"iterations": -1}, "iterations"),
        ({"initial_iterations": -5}, "initial_iterations"),
        ({"lbfgs_history": 0}, "lbfgs_history"),
        ({"lbfgs_history": 101}, "lbfgs_history"),
        ({"lbfgs_history": 2.5}, "lbfgs_history must be a whole number"),
        ({"preview_size": 2}, "preview_size"),
        ({"preview_every": -1}, "preview_every"),
        ({"snapshot_every": -1}, "snapshot_every"),
        ({"snapshot_every": 2.5}, "snapshot_every must be a whole number"),
        ({"preset": "ultra"}, "unknown preset 'ultra'"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
        ({"preserve_colors": "sepia"}, "unknown preserve_colors 'sepia'"),
        ({"init": "zeros"}, "unknown init 'zeros'"),
        ({"content_layers": ("relu4_9",)}, "unknown layer 'relu4_9' in content_layers"),
        ({"style_layers": "relu1_1,conv9_9"}, "unknown layer 'conv9_9' in style_layers"),
        ({"style_layers": ("pool5",)}, "unknown layer 'pool5'"),
        ({"content_layers": ()}, "content_layers is empty"),
        ({"style_layer_weights": (1.0, 2.0)}, "2 style layer weights for 5 layers"),
        ({"style_layer_weights": (1.0, 1.0, -1.0, 1.0, 1.0)}, "style layer weight"),
        ({"style_blend": (1.0, NAN)}, "style blend weight"),
        ({"style_blend": (1.0, -1.0)}, "style blend weight"),
        ({"style_blend": (0.0, 0.0)}, "add up to 0"),
    ],
)
def test_invalid_parameters_raise_a_message_naming_the_problem(changes, message):
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        StyleParams(**changes)


def test_invalid_input_error_is_a_value_error():
    with pytest.raises(ValueError, match="unknown preset"):
        StyleParams(preset="nope")
