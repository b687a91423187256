"""Reading every Pillow mode as 8-bit RGB or RGBA, refusing broken files with InvalidInputError
only, and atomic writes by extension."""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neural_style_daemon.errors import InvalidInputError
from neural_style_daemon.imageio import MAX_PIXELS, load_image, output_format, save_image


def png_bytes(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR chunk claiming another size (CRC fixed), its pixel data as it was."""
    assert png[12:16] == b"IHDR"
    header = struct.pack(">II", width, height) + png[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return png[:16] + header + crc + png[33:]


@pytest.fixture
def gradient() -> np.ndarray:
    """A 24 x 40 RGB gradient with seeded noise."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:24, 0:40]
    rgb = np.stack([x * 6, y * 10, 255 - x * 6], axis=-1) + rng.integers(0, 10, (24, 40, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def saved(tmp_path: Path, image: Image.Image, name: str, **options: object) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


# --- modes ---------------------------------------------------------------------------------------


def test_rgb_loads_unchanged(tmp_path, gradient):
    loaded = load_image(saved(tmp_path, Image.fromarray(gradient), "rgb.png"))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, gradient)


def test_rgba_loads_with_its_alpha(tmp_path, gradient):
    alpha = np.tile(np.arange(0, 240, 6, dtype=np.uint8), (24, 1))
    rgba = np.dstack([gradient, alpha])
    np.testing.assert_array_equal(load_image(saved(tmp_path, Image.fromarray(rgba), "a.png")), rgba)


def test_grayscale_loads_as_rgb_with_equal_channels(tmp_path, gradient):
    gray = gradient[..., 0]
    loaded = load_image(saved(tmp_path, Image.fromarray(gray, mode="L"), "gray.png"))
    assert loaded.shape == (24, 40, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)


def test_gray_with_alpha_loads_as_rgba(tmp_path, gradient):
    la = Image.merge("LA", [Image.fromarray(gradient[..., 0]), Image.fromarray(gradient[..., 1])])
    loaded = load_image(saved(tmp_path, la, "la.png"))
    assert loaded.shape == (24, 40, 4)
    np.testing.assert_array_equal(loaded[..., 0], gradient[..., 0])
    np.testing.assert_array_equal(loaded[..., 3], gradient[..., 1])


def palette_image() -> Image.Image:
    image = Image.new("P", (8, 6))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    indices = np.zeros((6, 8), np.uint8)
    indices[:, 3:6], indices[:, 6:] = 1, 2
    image.putdata(indices.ravel().tolist())
    return image


def test_palette_loads_as_rgb(tmp_path):
    loaded = load_image(saved(tmp_path, palette_image(), "palette.png"))
    assert loaded.shape == (6, 8, 3)
    assert loaded[0, 0].tolist() == [255, 0, 0]
    assert loaded[0, 4].tolist() == [0, 255, 0]
    assert loaded[0, 7].tolist() == [0, 0, 255]


def test_palette_with_a_transparent_index_loads_as_rgba(tmp_path):
    loaded = load_image(saved(tmp_path, palette_image(), "transparent.png", transparency=1))
    assert loaded.shape == (6, 8, 4)
    assert (loaded[:, 3:6, 3] == 0).all()
    assert (loaded[:, :3, 3] == 255).all() and (loaded[:, 6:, 3] == 255).all()
    assert loaded[0, 7, :3].tolist() == [0, 0, 255]


def test_cmyk_loads_as_rgb(tmp_path):
    cmyk = Image.new("CMYK", (10, 10), (255, 0, 0, 0))  # pure cyan
    loaded = load_image(saved(tmp_path, cmyk, "cmyk.tif"))
    assert loaded.shape == (10, 10, 3)
    assert (loaded == [0, 255, 255]).all()


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    loaded = load_image(saved(tmp_path, image, "deep.png"))
    assert loaded.shape == (1, 5, 3) and loaded.dtype == np.uint8
    gray = loaded[0, :, 0].tolist()
    assert gray[0] == 0 and gray[1] == 1 and gray[4] == 255
    assert gray[2] == 4  # 1000 / 257, where clipping would give 255
    assert abs(gray[3] - 128) <= 1


def test_exif_orientation_is_applied(tmp_path, gradient):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    loaded = load_image(saved(tmp_path, Image.fromarray(gradient), "turned.png", exif=exif))
    assert loaded.shape == (40, 24, 3)


def test_encoded_bytes_load_like_a_file(gradient):
    np.testing.assert_array_equal(load_image(png_bytes(Image.fromarray(gradient))), gradient)


# --- broken inputs -------------------------------------------------------------------------------


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match=r"content image .*missing\.png.*: file not found"):
        load_image(tmp_path / "missing.png", "content image")


def test_folder_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "not an image format"),
        (b"hello, I am text pretending to be a picture\n" * 20, "not an image format"),
        (np.random.default_rng(0).bytes(2000), "not an image format"),
    ],
    ids=["empty", "text", "random-bytes"],
)
def test_non_image_named_png_is_refused(tmp_path, payload, message):
    path = tmp_path / "fake.png"
    path.write_bytes(payload)
    with pytest.raises(InvalidInputError, match=message):
        load_image(path, "style image 2")


def test_truncated_image_is_refused(tmp_path):
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noisy))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError, match="corrupt or truncated"):
        load_image(path)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (9000, "9000x9000 is 81 megapixels, over the limit of 67"),  # under Pillow's warning
        (10_000, "10000x10000 is 100 megapixels"),  # Pillow warns, the loader decides
        (20_000, "a decompression bomb"),  # Pillow refuses on its own
    ],
)
def test_decompression_bomb_is_refused_before_decoding(tmp_path, side, message):
    assert side * side > MAX_PIXELS
    bomb = with_declared_size(png_bytes(Image.new("1", (8, 8))), side, side)
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(InvalidInputError, match=message):
        load_image(path)
    with pytest.raises(InvalidInputError, match=message):
        load_image(bomb)


def test_declared_size_patch_is_read_by_pillow():
    bomb = with_declared_size(png_bytes(Image.new("1", (8, 8))), 9000, 7000)
    with Image.open(io.BytesIO(bomb)) as image:
        assert image.size == (9000, 7000)


# --- saving --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("out.png", "PNG"),
        ("out.jpg", "JPEG"),
        ("out.JPEG", "JPEG"),
        ("out.tif", "TIFF"),
        ("out.tiff", "TIFF"),
        ("out.webp", "WEBP"),
    ],
)
def test_save_picks_the_format_by_extension(tmp_path, gradient, name, fmt):
    path = tmp_path / name
    save_image(gradient, path)
    with Image.open(path) as image:
        assert image.format == fmt
        assert image.size == (40, 24)
    loaded = load_image(path)
    tolerance = 0 if fmt in ("PNG", "TIFF") else 12
    assert np.abs(loaded.astype(int) - gradient).mean() <= tolerance
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_png_keeps_alpha_and_jpeg_drops_it(tmp_path, gradient):
    rgba = np.dstack([gradient, np.full((24, 40), 77, np.uint8)])
    save_image(rgba, tmp_path / "a.png")
    save_image(rgba, tmp_path / "a.jpg")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgba)
    with Image.open(tmp_path / "a.jpg") as jpeg:
        assert jpeg.mode == "RGB"


@pytest.mark.parametrize("name", ["out.gif", "out.bmp", "out", "out.png.txt"])
def test_unknown_extension_is_refused(tmp_path, gradient, name):
    with pytest.raises(InvalidInputError, match=r"cannot tell the output format.*\.png"):
        save_image(gradient, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_output_format_is_case_insensitive():
    assert output_format("X.PNG") == "PNG"
    assert output_format("photo.Jpeg") == "JPEG"


def test_missing_output_folder_is_refused(tmp_path, gradient):
    with pytest.raises(InvalidInputError, match="output folder does not exist"):
        save_image(gradient, tmp_path / "absent" / "out.png")


def test_existing_file_is_replaced_atomically(tmp_path, gradient):
    path = tmp_path / "out.png"
    path.write_bytes(b"old contents")
    save_image(gradient, path)
    np.testing.assert_array_equal(load_image(path), gradient)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_failed_save_leaves_the_existing_file_intact(tmp_path, gradient):
    path = tmp_path / "out.png"
    save_image(gradient, path)
    before = path.read_bytes()
    unencodable = np.zeros((8, 8), np.float32)  # mode "F": PNG cannot store it
    with pytest.raises((OSError, InvalidInputError)):
        save_image(unencodable, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left


def test_new_file_gets_the_mode_the_umask_allows(tmp_path, gradient):
    previous = os.umask(0o027)
    try:
        save_image(gradient, tmp_path / "new.png")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o640


def test_replaced_file_keeps_its_mode(tmp_path, gradient):
    path = tmp_path / "kept.png"
    path.write_bytes(b"old")
    path.chmod(0o604)
    save_image(gradient, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
