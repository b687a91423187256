"""The benchmark behind `neural-style bench`, at a tiny size with random weights on the CPU: the
JSON it prints, and the engine weights that make the engine optimise the reference objective.
No speed is asserted here: the speed target lives in the benchmark and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from neural_style_daemon.bench import add_arguments, engine_arm, run_from_args
from neural_style_daemon.bench.command import config_from_args
from neural_style_daemon.bench.naive import run_naive
from neural_style_daemon.bench.reference import (
    ReferenceLoss,
    engine_objective_factor,
    matched_weights,
)
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.optimize import Objective, layer_features, layer_grams
from neural_style_daemon.engine.stylize import StyleEngine, to_tensor

REQUIRED_KEYS = {
    "size",
    "ms_per_iter",
    "naive_ms_per_iter",
    "seconds_to_naive_loss",
    "naive_seconds",
    "speedup",
    "peak_mem_mb",
}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench")
    add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.slow
def test_json_reports_one_consistent_row_per_size(image_files, capsys):
    content, style = image_files
    args = parse(
        [
            "--device",
            "cpu",
            "--weights",
            "random",
            "--sizes",
            "64",
            "--naive-iterations",
            "8",
            "--preset",
            "draft",
            "--content",
            str(content),
            "--style",
            str(style),
            "--json",
        ]
    )
    assert run_from_args(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1
    row = rows[0]
    assert row.keys() >= REQUIRED_KEYS
    assert (row["size"], row["width"], row["height"]) == (64, 64, 51)
    assert row["naive_arch"] == "vgg19" and row["naive_iterations"] == 8
    assert row["engine_precision"] == "auto"
    for key in ("ms_per_iter", "naive_ms_per_iter", "engine_seconds"):
        assert row[key] > 0, key
    assert row["peak_mem_mb"] >= 0 and row["naive_peak_mem_mb"] >= 0
    # The naive made progress on the reference objective: that is the target the engine chases.
    assert row["naive_best_loss"] <= row["naive_loss"] < row["start_loss"]
    assert 0 < row["naive_seconds"] <= row["naive_run_seconds"]
    assert 0 < row["naive_iterations_to_naive_loss"] <= row["naive_iterations"]
    # The engine reached it (it stops there), and the speedup is the ratio of the times shown.
    assert row["seconds_to_naive_loss"] is not None
    assert 0 < row["seconds_to_naive_loss"] <= row["engine_seconds"]
    assert row["engine_loss"] <= row["naive_loss"]
    assert row["engine_steps_to_naive_loss"] == row["engine_steps"]
    assert row["speedup"] == pytest.approx(row["naive_seconds"] / row["seconds_to_naive_loss"])


def test_table_names_the_comparison(image_files, capsys, one_thread):
    content, style = image_files
    args = parse(
        [
            "--device",
            "cpu",
            "--weights",
            "random",
            "--sizes",
            "48",
            "--naive-iterations",
            "3",
            "--naive-arch",
            "vgg16",
            "--preset",
            "draft",
            "--content",
            str(content),
            "--style",
            str(style),
            "--engine-precision",
            "fp32",
        ]
    )
    assert run_from_args(args) == 0
    out = capsys.readouterr().out
    assert "naive: VGG16" in out and "| speedup |" in out
    assert "precision fp32" in out
    assert "48x38" in out


def test_matched_weights_make_the_engine_objective_a_multiple_of_the_reference(
    make_content, make_style, one_thread
):
    # In fp32: the identity is algebra, and bf16 (the engine's CPU path where the CPU has bf16
    # units) would blur it by its rounding.
    model = StyleEngine("random", "cpu", _precision="fp32").model
    content, style = make_content(64, 48), make_style(64, 64)
    reference = ReferenceLoss(model, content, style)
    params = StyleParams(**matched_weights(reference))
    device = torch.device("cpu")
    objective = Objective(
        model,
        layer_features(model, to_tensor(content, device)[None], params.content_layers),
        layer_grams(model, to_tensor(style, device)[None], params.style_layers),
        params,
    )
    factor = engine_objective_factor(reference)
    generator = torch.Generator().manual_seed(0)
    # At the content (pure style loss) and at noise (both terms): the same factor.
    for image in (to_tensor(content, device), torch.rand((3, 48, 64), generator=generator)):
        with torch.no_grad():
            engine_total = float(objective(image[None]).total)
        assert engine_total == pytest.approx(factor * reference(image), rel=1e-4)
        assert math.isfinite(engine_total) and engine_total > 0


def test_engine_arm_counts_steps_between_spaced_reads(
    make_content, make_style, engine, monkeypatch
):
    """With the loss read every third step (as on CUDA), the arm still counts
    every step and times each output-size step after the first report."""
    monkeypatch.setattr(engine, "_steps_between_reads", 3)
    content, style = make_content(48, 40), make_style(48, 48)
    reference = ReferenceLoss(engine.model, content, style)
    params = StyleParams(iterations=8, min_size=512, **matched_weights(reference))
    run = engine_arm.run_engine(
        engine, content, style, params, reference, target=0.0, stop_at_target=False
    )
    assert run.steps == 8
    assert [s.step for s in run.snapshots] == [3, 6, 8]
    assert len(run.output_step_seconds) == 8 - 3 and min(run.output_step_seconds) > 0
    timed = engine_arm.step_seconds(engine, content, style, params, 4)
    assert len(timed) == 4 and min(timed) > 0


def test_no_cuda_graphs_reaches_the_engine():
    assert config_from_args(parse(["--device", "cpu"])).engine_cuda_graphs
    config = config_from_args(parse(["--device", "cpu", "--no-cuda-graphs"]))
    assert not config.engine_cuda_graphs


def test_naive_runs_every_iteration_on_a_nearly_flat_loss(warm_engine, one_thread):
    """A content and style that differ by a whisper give loss changes below L-BFGS's default
    tolerance_change; the naive arm is a fixed number of iterations all the same (on the trained
    network at 512 px the defaults ended it after one)."""
    generator = torch.Generator().manual_seed(0)
    content = 0.5 + 1e-4 * torch.rand(3, 32, 32, generator=generator)
    style = 0.5 + 1e-4 * torch.rand(3, 32, 32, generator=generator)
    run = run_naive(warm_engine.model, content, style, 6)
    assert run.iterations == 6 and run.evaluations >= 6
