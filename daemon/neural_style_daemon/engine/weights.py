"""Where VGG weights come from: torchvision's ImageNet checkpoint (downloaded once, hash-checked,
cached where torch caches hub checkpoints), a local checkpoint file, or seeded random values."""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_Weights, VGG19_Weights

from ..errors import WeightsError
from .layers import layer_names
from .vgg import VGGFeatures

log = logging.getLogger(__name__)

IMAGENET_URLS = {
    "vgg16": VGG16_Weights.IMAGENET1K_V1.url,
    "vgg19": VGG19_Weights.IMAGENET1K_V1.url,
}
# torchvision names its checkpoints `<name>-<first hex digits of the SHA-256>.pth`.
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")

RANDOM_WARNING = (
    "using random VGG weights: the result will not look artistic (for tests and benchmarks only)"
)


def checkpoint_cache_path(url: str) -> Path:
    """Where torch.hub keeps (or would keep) the checkpoint behind `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def _expected_hash_prefix(url: str) -> str:
    match = HASH_IN_NAME.search(Path(url).name)
    if not match:
        raise WeightsError(f"cannot tell the expected hash of {url}: no '-<hash>.' in its name")
    return match.group(1)


def verify_checkpoint(path: Path, url: str) -> None:
    """Refuse a checkpoint whose SHA-256 does not start with the hash in the URL's file name."""
    expected = _expected_hash_prefix(url)
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(expected):
        raise WeightsError(
            f"{path} is damaged or not the expected checkpoint (SHA-256 does not start with "
            f"{expected}); delete it and run `neural-style fetch-weights` again"
        )


def fetch_checkpoint(url: str, *, progress: bool = True) -> Path:
    """The verified local copy of `url`, downloading it (with a progress bar) if not cached."""
    path = checkpoint_cache_path(url)
    if path.exists():
        verify_checkpoint(path, url)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, path)
    try:
        # Downloads to a temporary file, checks the hash prefix, then renames into place.
        torch.hub.download_url_to_file(url, str(path), _expected_hash_prefix(url), progress)
    except RuntimeError as exc:  # torch.hub's hash mismatch
        raise WeightsError(f"the download of {url} failed its hash check: {exc}") from None
    except OSError as exc:  # URLError and socket errors are OSErrors
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"VGG weights are not cached ({path}) and cannot be downloaded ({reason}). "
            "Run `neural-style fetch-weights` on a machine with internet access and copy the "
            "file there, or pass --weights PATH to a local checkpoint."
        ) from None
    return path


def features_state_dict(
    raw: dict[str, torch.Tensor], arch: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Map a torchvision VGG state dict (full, or `features` only) to VGGFeatures' names.

    Accepts keys `features.<i>.weight`, `<i>.weight` and `layers.<name>.weight` / `<name>.weight`;
    drops the classifier, which style transfer never uses. Also returns each new key's original
    name, for messages that name what the user's file holds.
    """
    by_index = layer_names(arch)
    mapped: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in raw.items():
        parts = key.split(".")
        if parts[0] == "classifier":
            continue
        if parts[0] in ("features", "layers"):
            parts = parts[1:]
        if len(parts) != 2 or parts[1] not in ("weight", "bias"):
            raise WeightsError(f"unexpected key {key!r}: not a VGG features checkpoint")
        layer, kind = parts
        if layer.isdigit() and int(layer) < len(by_index):
            layer = by_index[int(layer)]
        mapped[f"layers.{layer}.{kind}"] = value
        origin[f"layers.{layer}.{kind}"] = key
    return mapped, origin


def _torchvision_key(key: str, arch: str) -> str:
    """`layers.conv1_2.weight` as torchvision numbers it: `features.2.weight (conv1_2)`."""
    _, layer, kind = key.split(".")
    return f"features.{layer_names(arch).index(layer)}.{kind} ({layer})"


def load_checkpoint_into(model: VGGFeatures, path: Path) -> None:
    """Load a local checkpoint (never unpickling arbitrary objects) into `model`."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:  # corrupt zip, pickle refused by weights_only, ...
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    state, origin = features_state_dict(raw, model.arch)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        example = _torchvision_key(missing[0], model.arch)
        raise WeightsError(f"{path} lacks {len(missing)} VGG tensors, e.g. {example}")
    for key, tensor in state.items():
        if key not in expected:
            raise WeightsError(f"{path} has a tensor VGG {model.arch} does not: {origin[key]}")
        if tensor.shape != expected[key].shape:
            raise WeightsError(
                f"{path}: {origin[key]} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state)


def randomize(model: VGGFeatures, seed: int) -> None:
    """Seeded He initialisation as torchvision does it, one generator per layer name, so that a
    layer gets the same values in VGG16 and VGG19 and whatever the truncation depth."""
    for name, module in model.layers.named_children():
        if isinstance(module, nn.Conv2d):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            nn.init.kaiming_normal_(
                module.weight, mode="fan_out", nonlinearity="relu", generator=generator
            )
            assert module.bias is not None  # VGG's convolutions all have one
            nn.init.zeros_(module.bias)


def load_vgg(
    weights: str = "imagenet", *, arch: str = "vgg16", seed: int = 0, progress: bool = True
) -> VGGFeatures:
    """A frozen VGG feature extractor on the CPU with the requested weights.

    `weights` is "imagenet" (download once, then the cache), "random" (seeded; tests and
    benchmarks only) or the path of a local checkpoint.
    """
    model = VGGFeatures(arch)
    if weights == "random":
        log.warning(RANDOM_WARNING)
        randomize(model, seed)
    elif weights == "imagenet":
        load_checkpoint_into(model, fetch_checkpoint(IMAGENET_URLS[arch], progress=progress))
    else:
        load_checkpoint_into(model, Path(weights).expanduser())
    return model.requires_grad_(False).eval()
