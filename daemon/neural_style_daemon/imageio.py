"""Reading and writing image files: every mode Pillow opens becomes 8-bit RGB or RGBA, sizes are
checked before decoding (decompression bombs), and writes are atomic."""

from __future__ import annotations

import io
import os
import secrets
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInputError

# 64 megapixels, e.g. 8192 x 8192: far beyond what a job can process, far below a bomb.
MAX_PIXELS = 8192 * 8192

# Output formats by file extension.
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def load_image(source: str | os.PathLike[str] | bytes, what: str = "image") -> np.ndarray:
    """An H x W x 3 (RGB) or H x W x 4 (RGBA) uint8 array from a file path or encoded bytes.

    `what` names the image in error messages ("content image", "style image 2").
    """
    label = f"{what} ({source})" if not isinstance(source, bytes) else what
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on (our own size check decides) and about damaged
            # metadata such as corrupt EXIF, which does not stop the pixels from decoding.
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            with image:
                _check_pixel_count(image.size, label)
                image.load()
                return to_rgb_or_rgba(ImageOps.exif_transpose(image))
    except FileNotFoundError:
        raise InvalidInputError(f"{label}: file not found") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{label}: is a folder, not an image file") from None
    except PermissionError:
        raise InvalidInputError(f"{label}: permission denied") from None
    except Image.DecompressionBombError:
        raise InvalidInputError(
            f"{label}: declares over {MAX_PIXELS / 1e6:.0f} megapixels, the limit "
            "(a decompression bomb?)"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(f"{label}: not an image format that can be read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidInputError):
            raise
        raise InvalidInputError(f"{label}: corrupt or truncated image ({exc})") from None


def load_mask(source: str | os.PathLike[str] | bytes, what: str = "mask") -> np.ndarray:
    """An H x W uint8 mask (255: in, 0: out, grey: partly) from any image Pillow reads.

    An image with transparency somewhere (a region painted on a transparent layer, as GIMP
    exports it) is read by its alpha, whatever the paint's colour: a black brush on a clear
    layer still marks the region. Any other image is read by its grey value.
    """
    return mask_from_pixels(load_image(source, what))


def mask_from_pixels(pixels: np.ndarray) -> np.ndarray:
    """The mask `load_mask` reads from an H x W x 3 or x 4 uint8 image (see there)."""
    if pixels.shape[2] == 4 and pixels[..., 3].min() < 255:
        return np.ascontiguousarray(pixels[..., 3])
    # Pillow's own luma (ITU-R 601); a grey image comes back exactly as it was. A copy: a view
    # of the image would be read-only, which torch warns about.
    return np.array(Image.fromarray(np.ascontiguousarray(pixels[..., :3])).convert("L"))


def _check_pixel_count(size: tuple[int, int], label: str) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise InvalidInputError(
            f"{label}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the "
            f"limit of {MAX_PIXELS / 1e6:.0f}"
        )


def to_rgb_or_rgba(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to 8-bit RGB, or RGBA where the image has transparency.

    16-bit and 32-bit grayscale are rescaled (Pillow's own conversion clips them to 255).
    """
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image).astype(np.float64)
        peak = 65535.0
        if image.mode == "F":  # floats carry no range of their own: guess it from the data
            top = values.max(initial=0.0)
            peak = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = image.mode in _ALPHA_MODES or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    converted = image.convert("RGBA" if has_alpha else "RGB")
    return np.array(converted, dtype=np.uint8)


def output_format(path: str | os.PathLike[str]) -> str:
    """The Pillow format for an output path, or a clear error for an unknown extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInputError(
            f"cannot tell the output format of {path}: use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def save_image(array: np.ndarray, path: str | os.PathLike[str], *, quality: int = 95) -> None:
    """Write atomically: a temporary file beside the target, then a rename, so an existing file
    is never left half written."""
    path = Path(path)
    fmt = output_format(path)
    image = Image.fromarray(array)
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")  # JPEG has no alpha channel
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if not path.parent.is_dir():
        raise InvalidInputError(f"output folder does not exist: {path.parent}")
    tmp_path, fd = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format=fmt, **options)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise InvalidInputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[Path, int]:
    """A new temporary file in `path`'s folder, with the mode a new file gets under the umask
    (the kernel applies it) or, when replacing, the old file's mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666
    while True:
        tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(tmp_path, _NEW_FILE_FLAGS, mode)
        except FileExistsError:
            continue
        if path.exists():
            os.chmod(tmp_path, mode)  # the umask must not narrow a replaced file's mode
        return tmp_path, fd
