"""JobParams and job ids: the wire schema of a job, its ranges, and its defaults against the
engine's (whose parameters import no torch)."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neural_style_daemon.engine import params as engine_params
from neural_style_daemon.engine.params import StyleParams
from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.messages import Cancel, check_job_id, new_job_id
from neural_style_protocol.params import (
    MAX_SEED,
    MAX_SIZE,
    MIN_SIZE,
    ColorMode,
    Init,
    JobParams,
    Optimizer,
    Preset,
)


def finite(low: float, high: float | None = None) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


job_params = st.builds(
    JobParams,
    preset=st.sampled_from(Preset),
    strength=finite(0, 100),
    size=optional(st.integers(16, 8192)),
    iterations=optional(st.integers(0, 10_000)),
    preserve_colors=st.sampled_from(ColorMode),
    init=st.sampled_from(Init),
    seed=optional(st.integers(0, MAX_SEED)),
    style_weights=optional(
        st.lists(finite(1e-300).filter(lambda w: w > 0), min_size=1, max_size=8).map(tuple)
    ),
    style_scale=finite(0.05, 8),
    optimizer=st.sampled_from(Optimizer),
    tv_weight=finite(0),
    content_weight=finite(0),
    style_weight=optional(finite(0)),
    preview_every=st.integers(0, 10_000),
    tile_size=optional(st.integers(64, 8192)),
    max_memory=optional(finite(0.05, 4096)),
)


@given(job_params)
def test_params_round_trip_through_json(params: JobParams) -> None:
    wire = json.loads(json.dumps(params.to_wire(), allow_nan=False))
    assert JobParams.from_wire(wire) == params


def test_the_newer_fields_travel_only_when_set_so_older_daemons_take_the_job() -> None:
    assert "tile_size" not in JobParams().to_wire()
    assert "max_memory" not in JobParams().to_wire()
    wire = JobParams(tile_size=512, max_memory=2.5).to_wire()
    assert wire["tile_size"] == 512 and wire["max_memory"] == 2.5
    assert JobParams().to_wire()["seed"] == 0 and JobParams(seed=None).to_wire()["seed"] is None


def test_missing_keys_take_the_defaults() -> None:
    assert JobParams.from_wire({}) == JobParams()
    assert JobParams.from_wire({"preset": "draft", "strength": 80}) == JobParams(
        preset=Preset.DRAFT, strength=80.0
    )


def test_the_defaults_equal_the_engines() -> None:
    engine, ours = StyleParams(), JobParams()
    same_name = [
        "preset",
        "strength",  # a percentage in both
        "size",
        "iterations",
        "seed",
        "style_scale",
        "tv_weight",
        "content_weight",
        "style_weight",
        "optimizer",
        "preserve_colors",
        "preview_every",
        "tile_size",
        "max_memory",
        "live_interval",
    ]
    for name in same_name:
        assert getattr(ours, name) == getattr(engine, name), name
    assert ours.init.value == engine.init.value
    assert engine.style_blend is None and ours.style_weights is None


def test_the_engine_takes_its_enums_and_ranges_from_here() -> None:
    assert (engine_params.ColorMode, engine_params.Optimizer) == (ColorMode, Optimizer)
    assert (engine_params.MIN_SIDE, engine_params.MAX_SIZE) == (MIN_SIZE, MAX_SIZE)
    assert list(engine_params.PRESETS) == [preset.value for preset in Preset]
    # The engine's own Init adds what the wire does not carry (an init image file).
    assert {init.value for init in Init} < {init.value for init in engine_params.Init}


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"bogus": 1}, "bogus"),
        ({"preset": "ultra"}, "params.preset"),
        ({"preset": 1}, "params.preset"),
        ({"strength": 100.5}, "params.strength"),
        ({"strength": -1}, "params.strength"),
        ({"strength": True}, "params.strength"),
        ({"strength": math.nan}, "params.strength"),
        ({"strength": math.inf}, "params.strength"),
        ({"size": 15}, "params.size"),
        ({"size": 8193}, "params.size"),
        ({"size": 512.0}, "params.size"),
        ({"size": True}, "params.size"),
        ({"iterations": 10_001}, "params.iterations"),
        ({"iterations": -1}, "params.iterations"),
        ({"iterations": False}, "params.iterations"),
        ({"preserve_colors": "yes"}, "params.preserve_colors"),
        ({"init": "image"}, "params.init"),  # the engine's init image is not offered on the wire
        ({"seed": -1}, "params.seed"),
        ({"seed": 2**31}, "params.seed"),
        ({"style_weights": []}, "params.style_weights"),
        ({"style_weights": [1.0, 0.0]}, "params.style_weights"),
        ({"style_weights": [1.0, -2.0]}, "params.style_weights"),
        ({"style_weights": [math.inf]}, "params.style_weights"),
        ({"style_weights": 1.0}, "params.style_weights"),
        ({"style_scale": 0.04}, "params.style_scale"),
        ({"style_scale": 8.5}, "params.style_scale"),
        ({"optimizer": "sgd"}, "params.optimizer"),
        ({"tv_weight": -0.1}, "params.tv_weight"),
        ({"content_weight": math.inf}, "params.content_weight"),
        ({"style_weight": -1}, "params.style_weight"),
        ({"style_weight": "1e5"}, "params.style_weight"),
        ({"preview_every": 10_001}, "params.preview_every"),
        ({"preview_every": None}, "params.preview_every"),
        ({"tile_size": 63}, "params.tile_size"),
        ({"tile_size": 8193}, "params.tile_size"),
        ({"tile_size": 256.0}, "params.tile_size"),
    ],
)
def test_bad_values_are_refused_naming_the_key(changes: dict, named: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        JobParams.from_wire(changes)
    assert caught.value.code is ErrorCode.INVALID_PARAM
    assert named in caught.value.message


def test_params_must_be_an_object() -> None:
    with pytest.raises(ProtocolError):
        JobParams.from_wire([("preset", "draft")])


def test_numbers_are_stored_as_floats() -> None:
    params = JobParams(strength=70, style_weights=(1, 2), tv_weight=0)  # type: ignore[arg-type]
    assert isinstance(params.strength, float) and isinstance(params.tv_weight, float)
    assert all(isinstance(w, float) for w in params.style_weights or ())


@given(st.from_regex(re.compile(r"[A-Za-z0-9_.-]{1,64}"), fullmatch=True))
def test_valid_job_ids_are_accepted(job_id: str) -> None:
    assert check_job_id(job_id) == job_id
    assert Cancel(job_id).job_id == job_id


@given(st.text(max_size=80).filter(lambda s: not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", s)))
def test_invalid_job_ids_are_refused(job_id: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        Cancel(job_id)
    assert caught.value.code is ErrorCode.INVALID_PARAM


@pytest.mark.parametrize("job_id", [None, 7, b"bytes", "x" * 65, "", "a b", "../x", "é"])
def test_job_ids_of_the_wrong_kind_are_refused(job_id: object) -> None:
    with pytest.raises(ProtocolError):
        Cancel(job_id)  # type: ignore[arg-type]


def test_new_job_ids_are_valid_and_fresh() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100 and all(check_job_id(i) for i in ids)
