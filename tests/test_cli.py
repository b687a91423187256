"""The `neural-style` command line end to end: real images on disk, random weights, tiny sizes."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neural_style_daemon import console
from neural_style_daemon.cli import main
from neural_style_daemon.engine import stylize
from neural_style_daemon.engine.devices import has_fast_bf16
from neural_style_daemon.engine.memory import fitting_long_side, gib, job_memory_bytes

FAST = ["--weights", "random", "--device", "cpu", "--iterations", "2", "--min-size", "32", "-q"]


def fast_options_except(args: list[object]) -> list[str]:
    """FAST without the options that `args` sets itself (argparse keeps the last one)."""
    kept, pairs = [], iter(FAST)
    for option in pairs:
        if option == "-q":
            kept.append(option)
            continue
        value = next(pairs)
        if option not in args:
            kept += [option, value]
    return kept


def write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            (x * 255 // max(width - 1, 1)),
            (y * 255 // max(height - 1, 1)),
            rng.integers(0, 256, (height, width)),
        ],
        axis=-1,
    )
    if channels == 4:
        base = np.dstack([base, (x + y) % 256])
    Image.fromarray(base.astype(np.uint8), mode).save(path)
    return path


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    return {
        "content": write_image(tmp_path / "content.png", 61, 45),
        "style": write_image(tmp_path / "style.png", 64, 64, seed=1),
    }


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize(
    "ext, fmt", [("png", "PNG"), ("jpg", "JPEG"), ("tif", "TIFF"), ("webp", "WEBP")]
)
def test_stylize_writes_the_format_of_the_extension(images, tmp_path, ext, fmt):
    out = tmp_path / f"out.{ext}"
    assert run_cli("stylize", images["content"], images["style"], "-o", out, *FAST) == 0
    with Image.open(out) as written:
        assert written.format == fmt
        assert written.size == (61, 45)


def test_stylize_keeps_alpha_and_blends_two_styles(tmp_path, images):
    content = write_image(tmp_path / "rgba.png", 50, 37, "RGBA")
    second = write_image(tmp_path / "style2.png", 40, 70, seed=2)
    out = tmp_path / "out.png"
    code = run_cli(
        "stylize", content, images["style"], second, "--style-weights", "3,1", "-o", out, *FAST
    )
    assert code == 0
    source, result = np.array(Image.open(content)), np.array(Image.open(out))
    assert result.shape == source.shape
    assert np.array_equal(result[..., 3], source[..., 3])
    assert not np.array_equal(result[..., :3], source[..., :3])


def test_a_shorter_lbfgs_history_runs_to_a_result(tmp_path, images):
    out = tmp_path / "out.png"
    assert (
        run_cli(
            "stylize", images["content"], images["style"], "-o", out, "--lbfgs-history", "1", *FAST
        )
        == 0
    )
    with Image.open(images["content"]) as source, Image.open(out) as result:
        assert result.size == source.size
        assert not np.array_equal(np.array(result), np.array(source.convert("RGB")))


def test_output_file_gets_the_usual_mode(images, tmp_path):
    out = tmp_path / "out.png"
    previous = os.umask(0o022)
    try:
        assert run_cli("stylize", images["content"], images["style"], "-o", out, *FAST) == 0
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o644


def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A small valid PNG whose header claims width x height: a decompression bomb's shape."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # chunk type + 13 bytes of header data
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def bad_inputs(tmp_path: Path, images: dict[str, Path]) -> dict[str, tuple[list[object], str]]:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(images["content"].read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiny = write_image(tmp_path / "tiny.png", 1, 1)
    bomb = _png_claiming_size(tmp_path / "bomb.png", 40000, 40000)
    c, s = images["content"], images["style"]
    return {
        "missing": ([tmp_path / "nope.png", s], "file not found"),
        "folder": ([tmp_path, s], "folder"),
        "truncated": ([corrupt, s], "corrupt or truncated"),
        "text": ([text, s], "not an image format"),
        "1x1": ([tiny, s], "1x1"),
        "1x1 style": ([c, tiny], "style image 1"),
        "bomb": ([bomb, s], "megapixels"),
        "size over limit": ([c, s, "--size", "100000"], "size must be"),
        "nan strength": ([c, s, "--strength", "nan"], "strength"),
        "negative weight": ([c, s, "--style-weight", "-1"], "style_weight"),
        "nan blend": ([c, s, "--style-weights", "nan"], "blend weight"),
        "blend count": ([c, s, "--style-weights", "1,2"], "2 style blend weights for 1"),
        "unknown layer": ([c, s, "--style-layers", "relu9_9"], "relu9_9"),
        "no L-BFGS history": ([c, s, "--lbfgs-history", "0"], "lbfgs_history"),
        "bad output format": ([c, s, "-o", tmp_path / "out.gif"], "output format"),
        "missing weights file": ([c, s, "--weights", tmp_path / "none.pth"], "not found"),
        "bad device": ([c, s, "--device", "tpu"], "device"),
    }


def test_each_bad_input_gets_one_clear_line_and_exit_2(tmp_path, images, capsys):
    out = tmp_path / "existing.png"
    out.write_bytes(b"precious")
    for name, (args, expected) in bad_inputs(tmp_path, images).items():
        argv = ["stylize", *args]
        if "-o" not in args:
            argv += ["-o", out]
        code = run_cli(*argv, *fast_options_except(args))
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("neural-style: error: "), (name, err)
        assert expected in err[0], (name, err[0])
        assert out.read_bytes() == b"precious", name
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_unknown_preset_is_a_usage_error(images, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            "stylize",
            images["content"],
            images["style"],
            "-o",
            tmp_path / "o.png",
            "--preset",
            "fast",
        )
    assert exit_info.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_offline_without_cached_weights_says_what_to_do(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # Whatever network this machine has, the download goes to a closed local port.
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    code = run_cli(
        "stylize",
        images["content"],
        images["style"],
        "-o",
        tmp_path / "o.png",
        "--device",
        "cpu",
        "-q",
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert "neural-style fetch-weights" in err[0] and "--weights" in err[0]
    assert not (tmp_path / "o.png").exists()


def _console(*args: object, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "neural_style_daemon.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_out_of_memory_is_one_clear_line_after_the_engines_retry_and_writes_nothing(
    tmp_path, images, monkeypatch, capsys, caplog
):
    # Every step runs out of memory, as the allocator would say it: the engine's run again
    # with a shorter L-BFGS history too.
    def out_of_memory(_self):
        raise torch.OutOfMemoryError("out of memory (raised by the test)")

    monkeypatch.setattr(console.CancelOnInterrupt, "requested", out_of_memory)
    out = tmp_path / "out.png"
    assert run_cli("stylize", images["content"], images["style"], "-o", out, "--local", *FAST) == 2
    assert "retried with a shorter L-BFGS history (5 steps)" in caplog.text
    assert capsys.readouterr().err.strip() == (
        "neural-style: error: out of memory on cpu at 61 px: try a smaller size, or close "
        "other programs that use memory"
    )
    assert not out.exists()


def test_a_job_too_large_for_the_free_memory_is_refused_before_it_starts_with_a_size_to_try(
    tmp_path, images, monkeypatch, capsys
):
    # The free memory of a small machine, as the kernel would report it.
    monkeypatch.setattr(stylize, "available_memory_bytes", lambda device: 2**20)
    out = tmp_path / "out.png"
    assert run_cli("stylize", images["content"], images["style"], "-o", out, "--local", *FAST) == 2
    bf16 = has_fast_bf16(torch.device("cpu"))  # the engine's precision here
    assert capsys.readouterr().err.strip() == (
        f"neural-style: error: not enough memory at 61 px: a 61x45 px job needs about "
        f"{gib(job_memory_bytes(61 * 45, 5, bf16))} and 1 MiB are available: a size of "
        f"{fitting_long_side((61, 45), 5, bf16, 2**20)} px or less would fit"
    )
    assert not out.exists()


@pytest.mark.slow
def test_console_reports_bad_input_without_traceback(tmp_path, images):
    process = _console(
        "stylize",
        tmp_path / "missing.png",
        images["style"],
        "-o",
        tmp_path / "o.png",
        "--weights",
        "random",
    )
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in err
    assert err.strip().endswith("file not found")


@pytest.mark.slow
def test_ctrl_c_keeps_the_image_so_far(tmp_path, images):
    out = tmp_path / "interrupted.png"
    process = _console(
        "stylize",
        images["content"],
        images["style"],
        "-o",
        out,
        "--weights",
        "random",
        "--device",
        "cpu",
        "--iterations",
        "100000",
    )
    deadline = time.monotonic() + 120
    seen = ""
    while "step" not in seen and time.monotonic() < deadline:
        seen += process.stderr.read(1)  # the progress bar writes its first step
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted: saved the image" in err
    with Image.open(out) as written:
        assert written.size == (61, 45)
