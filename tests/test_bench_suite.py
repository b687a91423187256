"""The GPU suite (`python -m gpu_suite`) in its CPU smoke form: every part runs end to end at tiny
sizes (a real daemon in a child process included), every table row is there, variants that
need CUDA say so, and the gradient check compares real numbers. No time is asserted."""

from __future__ import annotations

import argparse
import json
import math
import os

import pytest
import torch

from gpu_suite.__main__ import main
from gpu_suite.command import build_parser, run_suite_from_args
from gpu_suite.step import VARIANTS
from gpu_suite.step_timing import relative_error
from neural_style_daemon.bench import add_arguments
from neural_style_daemon.engine.layers import BLOCK_DEPTHS, BLOCK_WIDTHS


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def json_blob(out: str) -> dict:
    return json.loads(out.split("```json\n", 1)[1].split("\n```", 1)[0])


def forward_conv_gflop(width: int, height: int) -> float:
    """VGG16's convolutions conv1_1..conv5_1 (what relu5_1 needs) on one image: 2 FLOP per
    multiply-add, 3 x 3 kernels, each block at half the previous block's resolution."""
    flop, channels = 0, 3
    for block, (depth, out) in enumerate(zip(BLOCK_DEPTHS["vgg16"], BLOCK_WIDTHS, strict=True)):
        h, w = height >> block, width >> block
        for _ in range(depth if block < 4 else 1):
            flop += 2 * channels * out * 9 * h * w
            channels = out
    return flop / 1e9


@pytest.fixture
def quiet_threads(one_thread, monkeypatch):
    """One thread here and in the daemon the suite starts (which inherits the environment):
    at these sizes a second thread gains nothing, and threads that spin-wait on cores that
    other processes share made the run several times slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.slow
def test_smoke_run_fills_every_part(image_files, tmp_path, capsys, quiet_threads):
    content, style = image_files
    out_dir = tmp_path / "out"
    cache_before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    args = parse(
        [
            "--smoke",
            "--device",
            "cpu",
            "--weights",
            "random",
            "--compile-backend",
            "aot_eager",
            "--large-size",
            "96",
            "--content",
            str(content),
            "--style",
            str(style),
            "--out",
            str(out_dir),
        ]
    )
    assert run_suite_from_args(args) == 0
    out = capsys.readouterr().out
    blob = json_blob(out)
    rows = {row["variant"]: row for row in blob["step"]}

    # Every variant has a row, at the smoke size; the CUDA-only ones say why they did not run.
    assert list(rows) == list(VARIANTS)
    assert {(r["size"], r["width"], r["height"]) for r in rows.values()} == {(64, 64, 51)}
    for name in ("bf16-cl-graph", "bf16-cl-compile-graphs"):
        assert rows[name]["status"] == "skipped"
        assert "CUDA" in rows[name]["note"] and rows[name]["ms_per_iter"] is None
        assert f"| {name}" in out and "skipped: CUDA graphs need a CUDA device" in out
    ran = [rows[n] for n in ("fp32", "bf16-cl", "bf16-cl-compile")]
    for row in ran:
        assert row["status"] in ("ok", "flagged") and row["ms_per_iter"] > 0
        assert row["ms_min"] <= row["ms_per_iter"]
        assert row["tflops"] == pytest.approx(row["gflop"] / row["ms_per_iter"])
        assert row["setup_s"] >= 0 and row["iterations"] == 2
    assert rows["bf16-cl-compile"]["compile_mode"] == "aot_eager"

    # One iteration is the forward pass and the gradient with respect to the image only:
    # about twice the forward convolutions (weight gradients would make it three times).
    conv = forward_conv_gflop(64, 51)
    assert 2 * conv <= rows["fp32"]["gflop"] < 2.2 * conv

    # The gradient check: fp32 against fp32 is exact, bf16 is not, and the status follows
    # the tolerance.
    fp32, bf16 = rows["fp32"], rows["bf16-cl"]
    assert fp32["grad_rel_error"] == 0.0 and fp32["loss_rel_error"] == 0.0
    assert fp32["status"] == "ok" and fp32["grad_rel_error_vs_bf16"] is None
    assert 1e-4 < bf16["grad_rel_error"] < 1 and bf16["loss_rel_error"] > 0
    assert bf16["status"] == ("ok" if bf16["grad_rel_error"] <= bf16["tolerance"] else "flagged")
    assert bf16["grad_rel_error_vs_bf16"] < 1e-6  # the same computation as its reference
    compiled = rows["bf16-cl-compile"]
    assert compiled["grad_rel_error"] == pytest.approx(bf16["grad_rel_error"], rel=0.2)

    # End to end: the in-process engine against the naive, then three daemon jobs, each scored
    # by the reference loss and set against the naive's time to that loss.
    engine = blob["engine_vs_naive"]
    assert engine["size"] == 64 and engine["engine_preset"] == "draft"
    naive = blob["naive"]
    assert naive["best_loss"] < naive["start_loss"] and naive["best_loss"] <= naive["final_loss"]
    assert blob["daemon_load_seconds"] >= blob["daemon_start_seconds"] > 0
    jobs = blob["jobs"]
    assert [j["job"] for j in jobs] == [
        "warm-up (content mirrored)",
        "first job with this content",
        "repeat (targets cached)",
        "another size (the content's left three quarters)",
    ]
    new_shape = jobs.pop()
    assert new_shape["status"] == "ok" and (new_shape["width"], new_shape["height"]) == (48, 51)
    assert new_shape["reference_loss"] is None and "not scored" in new_shape["note"]
    for job in jobs:
        assert job["status"] == "ok" and (job["width"], job["height"]) == (64, 51)
        assert 0 < job["worker_seconds"] <= job["seconds"]
        assert job["reference_loss"] < naive["start_loss"]  # it stylised
        reached = job["naive_seconds_to_loss"]
        naive_seconds = naive["run_seconds"] if reached is None else reached
        assert job["ratio_is_lower_bound"] == (reached is None)
        assert job["ratio"] == pytest.approx(naive_seconds / job["seconds"])
    # The engine's speed-ups one at a time: whole jobs in process; the CUDA-only switches
    # are skipped on a CPU, the others judged like the daemon's jobs.
    variants = {j["job"]: j for j in blob["engine_jobs"]}
    assert list(variants) == ["shipped", "reads-every-step", "eager", "fp32"]
    for name in ("reads-every-step", "eager"):
        assert variants[name]["status"] == "skipped" and "CUDA" in variants[name]["note"]
    for name in ("shipped", "fp32"):
        job = variants[name]
        assert job["status"] == "ok" and (job["width"], job["height"]) == (64, 51)
        assert job["steps"] > 0 and 0 < job["worker_seconds"] <= job["seconds"]
        assert job["reference_loss"] < naive["start_loss"]
        assert job["target_cache_hits"] > 0  # the warm-up left the style's targets
    # The repeat found the targets the first job left: the row labels are true.
    assert jobs[2]["target_cache_hits"] > jobs[1]["target_cache_hits"]
    assert blob["large"]["status"] == "ok" and blob["large"]["width"] == 96
    assert blob["large"]["peak_mem_mb"] > 0

    # Tables for every part, the header with the command, the JSON also in --out.
    for heading in (
        "One iteration: eager and CUDA graph",
        "End to end at 64 px",
        "The engine's speed-ups one at a time: whole jobs in process at 64 px",
        "A 96 px job through the warm daemon",
        "One iteration under torch.compile",
        "Issue 5 targets",
    ):
        assert f"### {heading}" in out
    assert "- command: `" in out and "torch " + torch.__version__ in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.md", "results.json"]
    assert json.loads((out_dir / "results.json").read_text())["step"] == blob["step"]
    assert os.environ.get("TORCHINDUCTOR_CACHE_DIR") == cache_before


def test_a_spent_budget_skips_every_part_with_a_note(image_files, capsys, quiet_threads):
    content, style = image_files
    args = parse(
        [
            "--smoke",
            "--device",
            "cpu",
            "--weights",
            "random",
            "--budget-seconds",
            "0",
            "--large-size",
            "96",
            "--content",
            str(content),
            "--style",
            str(style),
            "--json",
        ]
    )
    assert run_suite_from_args(args) == 0
    blob = json.loads(capsys.readouterr().out)
    assert len(blob["step"]) == len(VARIANTS)
    for row in blob["step"]:
        assert row["status"] == "skipped" and "budget" in row["note"]
    assert blob["jobs"] == [] and blob["engine_jobs"] == [] and blob["engine_vs_naive"] is None
    assert blob["large"]["status"] == "skipped"
    assert any("end to end" in note and "budget" in note for note in blob["notes"])


def test_the_suite_is_not_a_command_of_the_package(capsys):
    """`neural-style bench` keeps the comparison; the suite's options are the suite's alone."""
    parser = argparse.ArgumentParser(prog="bench")
    add_arguments(parser)
    for argv in (["--suite", "gpu"], ["--smoke"], ["--budget-seconds", "5"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
    assert "--smoke" not in parser.format_help()


def test_unknown_variants_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["--variants", "fp32,fp8"])
    assert "fp8" in capsys.readouterr().err


def test_a_domain_error_is_one_line_and_exit_2(capsys):
    argv = ["--device", "cpu", "--weights", "model.pth", "--naive-arch", "vgg19", "--smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpu_suite: error: ") and "--naive-arch vgg16" in err


def test_relative_error():
    reference = torch.tensor([3.0, 4.0])
    assert relative_error(reference.clone(), reference) == 0.0
    assert relative_error(torch.tensor([3.0, 5.0]), reference) == pytest.approx(0.2)
    assert relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
    assert relative_error(torch.ones(2), torch.zeros(2)) == math.inf
    assert math.isnan(relative_error(torch.tensor([math.nan, 4.0]), reference))
