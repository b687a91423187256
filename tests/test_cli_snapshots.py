"""`neural-style stylize --save-every N`: the image so far written every N steps beside the
output, whole files only, and a bad N refused before anything is written."""

from __future__ import annotations

from itertools import combinations, count
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import FAST, run_cli, write_image

from neural_style_daemon import console
from neural_style_daemon.snapshots import snapshot_path

# Three scales (at 64 px: 32 px and two between) of two steps each: 6 steps in all.
SCALES = [*FAST, "--initial-iterations", "2"]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    content = write_image(tmp_path / "content.png", 64, 48, "RGBA")
    return content, write_image(tmp_path / "style.png", 40, 40, seed=1)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def test_snapshots_are_written_every_n_steps_at_the_contents_size_beside_the_output(
    tmp_path, inputs
):
    content, style = inputs
    out = tmp_path / "out.png"
    assert run_cli("stylize", content, style, "-o", out, *SCALES, "--save-every", "2") == 0
    snapshots = [tmp_path / f"out-{steps}.png" for steps in (2, 4, 6)]
    # Nothing else: no temporary file left behind.
    assert sorted(tmp_path.iterdir()) == sorted([content, style, out, *snapshots])
    source = pixels(content)
    images = [pixels(path) for path in snapshots]
    for image in images:  # the one at step 2 is enlarged from the coarsest scale
        assert image.shape == source.shape  # 64 x 48, RGBA
        assert np.array_equal(image[..., 3], source[..., 3])
    for first, second in combinations(images, 2):
        assert not np.array_equal(first, second)
    assert np.array_equal(images[-1], pixels(out))  # the job's last step: the result itself


@pytest.mark.parametrize("value", ["0", "-3", "2.5", "ten", ""])
def test_a_bad_interval_is_one_clear_line_and_writes_nothing(tmp_path, inputs, capsys, value):
    content, style = inputs
    out = tmp_path / "out.png"
    assert run_cli("stylize", content, style, "-o", out, *FAST, "--save-every", value) == 2
    assert capsys.readouterr().err.strip() == (
        f"neural-style: error: --save-every takes a positive whole number of steps, not {value!r}"
    )
    assert sorted(tmp_path.iterdir()) == sorted(inputs)


def test_ctrl_c_still_writes_the_output_the_last_snapshot_was(
    tmp_path, inputs, monkeypatch, capsys
):
    # Ctrl-C as the cooperative cancel hears it, in the check after step 3.
    checks = count(1)
    monkeypatch.setattr(console.CancelOnInterrupt, "requested", lambda _self: next(checks) >= 3)
    content, style = inputs
    out = tmp_path / "out.png"
    code = run_cli("stylize", content, style, "-o", out, *SCALES, "--save-every", "3")
    assert code == console.EXIT_INTERRUPTED
    assert "interrupted: saved the image after 3 steps" in capsys.readouterr().err
    assert not (tmp_path / "out-6.png").exists()
    assert np.array_equal(pixels(out), pixels(tmp_path / "out-3.png"))


def test_a_snapshot_is_named_by_its_step_in_the_outputs_format():
    assert snapshot_path(Path("out.png"), 50) == Path("out-50.png")
    assert snapshot_path(Path("a/b.c/my.photo.jpg"), 1200) == Path("a/b.c/my.photo-1200.jpg")
