"""`neural-style stylize-frames` end to end: frames on disk, random weights, tiny sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli import FAST, run_cli, write_image

from neural_style_daemon import frames_cli, imageio


def write_frames(folder: Path, count: int, size: tuple[int, int] = (48, 40)) -> list[Path]:
    """`count` crops of one image sliding right by 2 px a frame, as PNG files."""
    width, height = size
    wide = write_image(folder / "wide.png", width + 2 * count, height)
    with Image.open(wide) as image:
        pixels = np.asarray(image)
    wide.unlink()
    paths = []
    for i in range(count):
        path = folder / f"frame{i:03d}.png"
        Image.fromarray(pixels[:, 2 * i : 2 * i + width]).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def style(tmp_path: Path) -> Path:
    return write_image(tmp_path / "style.png", 40, 40, seed=1)


def test_each_frame_is_written_under_its_name_and_nothing_else(
    tmp_path, style, monkeypatch, one_thread
):
    frames = write_frames(tmp_path, 3)
    out = tmp_path / "out"
    saved: list[str] = []
    save = imageio.save_image

    def recording(array, path, **options):
        saved.append(Path(path).name)
        save(array, path, **options)

    monkeypatch.setattr(imageio, "save_image", recording)
    assert run_cli("stylize-frames", *frames, "--style", style, "--out-dir", out, *FAST) == 0
    names = ["frame000.png", "frame001.png", "frame002.png"]
    assert saved == names  # through the atomic writer: a temporary file, then a rename
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary file left behind
    for path in out.iterdir():
        with Image.open(path) as written:
            assert written.size == (48, 40)


def test_two_styles_and_the_job_options_are_taken(tmp_path, style, one_thread):
    frames = write_frames(tmp_path, 2)
    second = write_image(tmp_path / "second.png", 40, 40, seed=2)
    out = tmp_path / "out"
    args = ["--style", style, "--style", second, "--style-weights", "2,1", "--temporal-weight", 50]
    code = run_cli("stylize-frames", *frames, *args, "--out-dir", out, "--strength", 30, *FAST)
    assert code == 0 and len(list(out.iterdir())) == 2


def errors_of(capsys, *args: object) -> tuple[int, list[str]]:
    code = run_cli(*args)
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_single_frame_is_a_one_line_error(tmp_path, style, capsys):
    (frame,) = write_frames(tmp_path, 1)
    out = tmp_path / "out"
    code, lines = errors_of(
        capsys, "stylize-frames", frame, "--style", style, "--out-dir", out, *FAST
    )
    assert code == 2 and len(lines) == 1
    assert "at least 2 frames, got 1" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_frames_of_different_sizes_are_a_one_line_error(tmp_path, style, capsys):
    first = write_image(tmp_path / "a.png", 48, 40)
    second = write_image(tmp_path / "b.png", 50, 40)
    out = tmp_path / "out"
    code, lines = errors_of(
        capsys, "stylize-frames", first, second, "--style", style, "--out-dir", out, *FAST
    )
    assert code == 2 and len(lines) == 1
    assert "frame 2 is 50x40, frame 1 is 48x40" in lines[0]


def test_two_frames_of_one_name_are_refused(tmp_path, style, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_image(tmp_path / "a" / "f.png", 48, 40)
    second = write_image(tmp_path / "b" / "f.png", 48, 40)
    code, lines = errors_of(
        capsys, "stylize-frames", first, second, "--style", style, "--out-dir", tmp_path / "o"
    )
    assert code == 2 and len(lines) == 1 and "would both be written to" in lines[0]


def test_an_init_image_is_not_an_option_for_frames(tmp_path, style, capsys):
    frames = write_frames(tmp_path, 2)
    code, lines = errors_of(
        capsys, "stylize-frames", *frames, "--style", style, "--out-dir", tmp_path / "o",
        "--init", style,
    )  # fmt: skip
    assert code == 2 and len(lines) == 1 and "content or noise" in lines[0]


def test_the_help_says_where_it_runs(capsys):
    with pytest.raises(SystemExit):
        run_cli("stylize-frames", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "A running daemon (`neural-style start`) does the work as one job" in help_text
    assert "--local" in help_text


def test_ctrl_c_keeps_the_frames_done(tmp_path, style, monkeypatch, capsys, one_thread):
    frames = write_frames(tmp_path, 3)
    out = tmp_path / "out"
    # Ctrl-C as soon as the first frame is on disk: during the second.
    monkeypatch.setattr(
        frames_cli.CancelOnInterrupt, "requested", lambda _self: any(out.glob("*.png"))
    )
    code = run_cli("stylize-frames", *frames, "--style", style, "--out-dir", out, *FAST)
    assert code == 130
    assert sorted(p.name for p in out.iterdir()) == ["frame000.png"]
    assert "interrupted: wrote 1 of 3 frames" in capsys.readouterr().err


def test_the_progress_bar_names_the_frame(capsys):
    from neural_style_daemon.console import ProgressBar
    from neural_style_daemon.engine.stylize import Progress

    progress = Progress(
        scale=1, scales=1, size=(48, 40), iteration=3, iterations=10, work_done=0.5,
        losses={"total": 1.0}, elapsed=1.0, peak_memory_bytes=0, frame=2, frames=3,
    )  # fmt: skip
    with ProgressBar(disabled=False) as bar:
        bar.update(progress)
    assert "frame 2/3 scale 1/1 48x40 step 3/10" in capsys.readouterr().err
