"""`--style-masks` and `--style-source-masks` in this process (issue 17): how a mask file is
read, the options' syntax, every bad input as one clear line with nothing written, and a job
with masks run to its output. (The same through a daemon: test_daemon_masks.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import FAST, run_cli, write_image

from neural_style_daemon.cli import build_parser
from neural_style_daemon.errors import InvalidInputError
from neural_style_daemon.imageio import load_mask
from neural_style_daemon.region_masks import join_mask_values

CONTENT_SIZE = (61, 45)
STYLE_SIZE = (64, 64)


def write_mask(path: Path, size: tuple[int, int], left: int = 255, right: int = 0) -> Path:
    """A grey mask: `left` on the left half, `right` on the right."""
    width, height = size
    grey = np.full((height, width), right, np.uint8)
    grey[:, : width // 2] = left
    Image.fromarray(grey, "L").save(path)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "content": write_image(tmp_path / "content.png", *CONTENT_SIZE),
        "style": write_image(tmp_path / "style.png", *STYLE_SIZE, seed=1),
        "second": write_image(tmp_path / "second.png", 40, 70, seed=2),
        "mask": write_mask(tmp_path / "mask.png", CONTENT_SIZE),
        "source": write_mask(tmp_path / "source.png", STYLE_SIZE),
    }


# ---- reading a mask file ---------------------------------------------------------------------


def test_a_grey_mask_reads_as_it_is_and_a_colour_one_by_its_grey(tmp_path: Path) -> None:
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(values, "L").save(tmp_path / "grey.png")
    assert np.array_equal(load_mask(tmp_path / "grey.png"), values)
    colour = np.zeros((2, 3, 3), np.uint8)
    colour[0] = (255, 255, 255)
    colour[1] = (255, 0, 0)  # red: its luma, 76
    Image.fromarray(colour).save(tmp_path / "colour.png")
    assert load_mask(tmp_path / "colour.png").tolist() == [[255] * 3, [76] * 3]


def test_a_16_bit_grey_mask_is_rescaled_not_clipped(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)).save(tmp_path / "deep.png")
    assert load_mask(tmp_path / "deep.png").tolist() == [[0, 128, 255]]


def test_a_mask_painted_on_a_transparent_layer_is_read_by_its_alpha(tmp_path: Path) -> None:
    # As GIMP exports a region painted with a black brush on a transparent layer: the colour
    # says nothing, the alpha is the region, soft edge included.
    painted = np.zeros((2, 3, 4), np.uint8)
    painted[..., 3] = [[255, 128, 0], [0, 0, 0]]
    Image.fromarray(painted, "RGBA").save(tmp_path / "painted.png")
    assert load_mask(tmp_path / "painted.png").tolist() == [[255, 128, 0], [0, 0, 0]]
    grey_alpha = np.dstack([np.full((1, 2), 255, np.uint8), np.array([[0, 200]], np.uint8)])
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    assert load_mask(tmp_path / "la.png").tolist() == [[0, 200]]


def test_an_opaque_mask_with_an_alpha_channel_is_read_by_its_grey(tmp_path: Path) -> None:
    # GIMP gives layers an alpha channel by default: opaque everywhere, it means nothing.
    opaque = np.zeros((1, 2, 4), np.uint8)
    opaque[0, 0] = (255, 255, 255, 255)
    opaque[0, 1] = (0, 0, 0, 255)
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    assert load_mask(tmp_path / "opaque.png").tolist() == [[255, 0]]


def test_an_unreadable_mask_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InvalidInputError, match=r"style mask 2 \(.*notes.png\): not an image"):
        load_mask(tmp_path / "notes.png", "style mask 2")


# ---- the options' syntax ---------------------------------------------------------------------


def test_a_list_names_one_file_per_style_and_a_dash_for_none() -> None:
    args = build_parser().parse_args(
        ["stylize", "c.png", "s.png", "t.png", "-o", "o.png", "--style-masks", "a.png, b.png"]
    )
    assert args.style_masks == (Path("a.png"), Path("b.png"))
    assert args.style_source_masks is None
    argv = join_mask_values(
        ["stylize", "c.png", "s.png", "t.png", "-o", "o.png", "--style-source-masks", "-,b.png"]
    )
    args = build_parser().parse_args(argv)
    assert args.style_source_masks == (None, Path("b.png"))


def test_a_leading_dash_is_a_value_only_after_a_mask_option() -> None:
    assert join_mask_values(["--style-masks", "-,m.png", "-q"]) == ["--style-masks=-,m.png", "-q"]
    assert join_mask_values(["--style-masks", "-", "-q"]) == ["--style-masks", "-", "-q"]
    assert join_mask_values(["-o", "-,x.png"]) == ["-o", "-,x.png"]


def test_an_empty_entry_is_a_usage_error(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            "stylize",
            files["content"],
            files["style"],
            "-o",
            tmp_path / "o.png",
            "--style-masks",
            "a.png,,b.png",
        )
    assert exit_info.value.code == 2
    assert "an empty entry in 'a.png,,b.png'" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


# ---- bad input: one line, exit 2, nothing written --------------------------------------------


def bad_mask_inputs(tmp_path: Path, files: dict[str, Path]) -> dict[str, tuple[list, str]]:
    """Each case: the stylize words before -o, and what its one line must say."""
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(files["mask"].read_bytes()[:60])
    small = write_mask(tmp_path / "small.png", (30, 20))
    black = write_mask(tmp_path / "black.png", STYLE_SIZE, left=0)
    c, s, t, m = files["content"], files["style"], files["second"], files["mask"]
    return {
        "missing": ([c, s, "--style-masks", tmp_path / "nope.png"], "nope.png): file not found"),
        "folder": ([c, s, "--style-masks", tmp_path], "is a folder"),
        "text": ([c, s, "--style-masks", text], f"style mask 1 ({text}): not an image format"),
        "truncated": (
            [c, s, t, "--style-masks", f"-,{truncated}"],
            f"style mask 2 ({truncated}): corrupt or truncated",
        ),
        "wrong size": (
            [c, s, "--style-masks", small],
            f"style mask 1 ({small}) is 30x20; the content is 61x45",
        ),
        "too few": (
            [c, s, t, "--style-masks", m],
            "--style-masks names 1 file(s) for 2 style image(s): give one per style image",
        ),
        "too many": (
            [c, s, "--style-source-masks", f"{files['source']},-"],
            "--style-source-masks names 2 file(s) for 1 style image(s)",
        ),
        "source the content's size": (
            [c, s, "--style-source-masks", m],
            f"style source mask 1 ({m}) is 61x45; style image 1 ({s}) is 64x64",
        ),
        "source of the wrong style": (
            [c, s, t, "--style-source-masks", f"-,{files['source']}"],
            f"style source mask 2 ({files['source']}) is 64x64; style image 2 ({t}) is 40x70",
        ),
        "black source": (
            [c, s, "--style-source-masks", black],
            f"style source mask 1 ({black}) is black everywhere: it leaves nothing of style",
        ),
    }


def test_each_bad_mask_gets_one_clear_line_and_exit_2(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "existing.png"
    out.write_bytes(b"precious")
    for name, (words, expected) in bad_mask_inputs(tmp_path, files).items():
        code = run_cli("stylize", *words, "-o", out, *FAST)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("neural-style: error: "), (name, err)
        assert expected in err[0], (name, err[0])
        assert out.read_bytes() == b"precious", name
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- a job with masks ------------------------------------------------------------------------


def test_a_job_with_masks_writes_its_output_and_the_masks_change_it(
    tmp_path: Path, files: dict[str, Path]
) -> None:
    c, s, t = files["content"], files["style"], files["second"]
    left = write_mask(tmp_path / "left.png", CONTENT_SIZE)
    right = write_mask(tmp_path / "right.png", CONTENT_SIZE, left=0, right=255)
    source = write_mask(tmp_path / "t-source.png", (40, 70))
    plain, masked = tmp_path / "plain.png", tmp_path / "masked.png"
    assert run_cli("stylize", c, s, t, "-o", plain, *FAST) == 0
    masks = f"{left},{right}"
    code = run_cli(
        "stylize",
        c,
        s,
        t,
        "-o",
        masked,
        "--style-masks",
        masks,
        "--style-source-masks",
        f"-,{source}",
        *FAST,
    )
    assert code == 0
    with Image.open(masked) as result, Image.open(plain) as unmasked:
        assert result.size == CONTENT_SIZE
        assert not np.array_equal(np.asarray(result), np.asarray(unmasked))
