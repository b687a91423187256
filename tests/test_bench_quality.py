"""The quality suite (`neural-style bench --suite quality`) and the measures of a look it judges
by, on tiny images with random weights: the mechanics only. What the measures say about real
results is checked with the trained weights in test_trained_look.py."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from neural_style_daemon.bench import add_arguments, run_from_args
from neural_style_daemon.bench.look import LookMeter, colour_difference, stroke_frequency
from neural_style_daemon.bench.quality import (
    REFERENCE,
    Pair,
    QualityConfig,
    default_pairs,
    reference_params,
    run_quality,
)
from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.params import PRESETS
from neural_style_daemon.errors import InvalidInputError
from neural_style_daemon.imageio import save_image


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_an_image_is_at_no_distance_from_itself(engine, make_content):
    image = make_content(48, 40)
    look = LookMeter(engine.model, image, [image]).measure(image)
    assert look.content == 0.0
    assert look.style < 1e-6
    assert set(look.style_by_layer) == {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"}


def test_a_stylised_image_is_nearer_the_style_than_the_photo_is(engine, make_content, make_style):
    content, style = make_content(48, 40), make_style(60, 60)
    meter = LookMeter(engine.model, content, [style])
    halfway = ((content.astype(np.float64) + make_style(48, 40)) / 2).astype(np.uint8)
    photo, mixed = meter.measure(content), meter.measure(halfway)
    assert mixed.style < photo.style
    assert mixed.content > photo.content


def test_the_gap_is_the_larger_relative_difference(engine, make_content, make_style):
    meter = LookMeter(engine.model, make_content(48, 40), [make_style(48, 48)])
    first = meter.measure(make_style(48, 40))
    second = meter.measure(make_content(48, 40, seed=5))
    expected = max(
        abs(first.style - second.style) / second.style,
        abs(first.content - second.content) / second.content,
    )
    assert first.gap(second) == pytest.approx(expected)
    assert first.gap(first) == 0.0


def test_the_layout_difference_ignores_fine_noise_that_the_pixel_difference_sees():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 128, np.uint8)
    noisy = np.clip(128 + rng.normal(0, 40, flat.shape), 0, 255).astype(np.uint8)
    difference = colour_difference(noisy, flat)
    assert difference.pixels > 10
    assert difference.layout < difference.pixels / 5
    shifted = colour_difference(np.full_like(flat, 160), flat)
    assert shifted.layout == pytest.approx(shifted.pixels, rel=1e-6)
    with pytest.raises(ValueError, match="different sizes"):
        colour_difference(flat, flat[:32])


def test_larger_strokes_have_a_lower_stroke_frequency():
    rng = np.random.default_rng(1)
    content = np.full((128, 128, 3), 100, np.uint8)

    def strokes(block: int) -> np.ndarray:
        blocks = rng.integers(60, 200, (128 // block, 128 // block, 1))
        return np.kron(blocks, np.ones((block, block, 3))).astype(np.uint8)

    fine, coarse = stroke_frequency(strokes(2), content), stroke_frequency(strokes(16), content)
    assert coarse < fine / 2


def test_the_reference_runs_best_longer_without_early_stop():
    params = reference_params(StyleParams(strength=30), 3)
    assert params.preset == "best"
    assert params.initial_iterations == 3 * PRESETS["best"].initial_iterations
    assert params.iterations == 3 * PRESETS["best"].iterations
    assert params.tolerance == 0.0
    assert params.strength == 30


@pytest.mark.slow
def test_every_run_is_judged_against_the_reference(engine, tmp_path, make_content, make_style):
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(make_content(40, 32), content)
    save_image(make_style(48, 48), style)
    config = QualityConfig(
        pairs=(Pair(content, style),),
        sizes=(32,),
        presets=("draft",),
        reference_factor=0.02,
        strengths=(20.0,),
    )
    seen = []
    (result,) = run_quality(config, engine, seen.append)
    assert [run.label for run in result.runs] == [REFERENCE, "draft", "strength 20"]
    assert seen == list(result.runs)
    reference, draft, sweep = result.runs
    assert reference.steps == round(0.02 * PRESETS["best"].initial_iterations)  # one scale
    assert reference.gap is None and reference.to_reference is None
    assert draft.gap == pytest.approx(draft.look.gap(reference.look))
    assert draft.to_reference is not None and draft.to_reference.pixels > 0
    assert sweep.strength == 20.0
    assert draft.image.shape == result.content.shape == (26, 32, 3)  # the processing size


def test_without_the_samples_the_pairs_must_be_named(tmp_path):
    with pytest.raises(InvalidInputError, match="--pair CONTENT STYLE"):
        default_pairs(tmp_path)


def test_the_default_pairs_see_each_sample_once_and_all_pairs_every_combination(tmp_path):
    names = {
        "content": ["astronaut", "chelsea", "coffee", "rocket"],
        "style": ["shipwreck", "starry_night", "the_scream", "woman-with-hat-matisse"],
    }
    for folder, stems in names.items():
        (tmp_path / folder).mkdir()
        suffix = ".png" if folder == "content" else ".jpg"
        for stem in stems:
            Image.new("RGB", (20, 20)).save(tmp_path / folder / f"{stem}{suffix}")
    pairs = default_pairs(tmp_path)
    assert len(pairs) == 4
    assert len({p.content for p in pairs}) == len({p.style for p in pairs}) == 4
    assert len(default_pairs(tmp_path, every_combination=True)) == 16


@pytest.mark.slow
def test_the_command_writes_the_table_the_json_and_a_contact_sheet(
    image_files, tmp_path, capsys, one_thread
):
    content, style = image_files
    out = tmp_path / "out"
    args = parse(
        [
            "--suite",
            "quality",
            "--device",
            "cpu",
            "--weights",
            "random",
            "--sizes",
            "32",
            "--presets",
            "draft",
            "--pair",
            str(content),
            str(style),
            "--out",
            str(out),
            "--reference-factor",
            "1",
        ]
    )
    assert run_from_args(args) == 0
    printed = capsys.readouterr()
    assert "| content / style | 32 | draft |" in printed.out
    assert "content / style at 32 px, reference:" in printed.err
    blob = json.loads((out / "quality.json").read_text())
    assert [run["label"] for run in blob["pairs"][0]["runs"]] == [REFERENCE, "draft"]
    assert blob["meta"]["weights"] == "random"
    assert (out / "quality.md").read_text().startswith("| pair |")
    with Image.open(out / "contact-sheet.png") as sheet:
        assert sheet.width > 4 * 256  # content, style, draft and the reference side by side
    for label in ("reference", "draft"):
        with Image.open(out / "images" / f"content-style-32-{label}.png") as result:
            assert max(result.size) == 32  # at the processing size, not enlarged


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pair", "a.png", "b.png"], "--pair: only with --suite quality"),
        (["--strengths", "30"], "--strengths: only with --suite quality"),
        (["--out", "results"], "--out: only with --suite quality"),
    ],
)
def test_options_of_one_suite_are_refused_with_another(argv, message):
    with pytest.raises(InvalidInputError, match=message):
        run_from_args(parse(argv))


def test_strengths_out_of_range_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["--suite", "quality", "--strengths", "30,150"])
    assert "strengths are 0 to 100" in capsys.readouterr().err
