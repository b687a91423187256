"""Loading VGG weights: checkpoint forms against torchvision's own VGG16, the hub cache with its
hash check, the offline message, and the files that must be refused. No network is used."""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from neural_style_daemon.engine import weights
from neural_style_daemon.engine.layers import relu_names
from neural_style_daemon.engine.vgg import IMAGENET_MEAN, IMAGENET_STD, VGGFeatures
from neural_style_daemon.engine.weights import fetch_checkpoint, load_vgg
from neural_style_daemon.errors import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")

# A URL nothing listens on (the discard port), so a download attempt fails at once.
CLOSED_PORT = "http://127.0.0.1:9"


class NotATensor:
    """A picklable object that weights-only loading must refuse."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


def seeded_torchvision_vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 `features`, built without paying for the classifier, with seeded
    He-scaled weights and small random biases."""
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    features = model.features.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(2024)
    with torch.no_grad():
        for module in features:
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * 9
                module.weight.normal_(0, math.sqrt(2 / fan_in), generator=generator)
                module.bias.normal_(0, 0.05, generator=generator)
    return features.eval()


@pytest.fixture(scope="module")
def source_features() -> nn.Sequential:
    return seeded_torchvision_vgg16_features()


@pytest.fixture(scope="module")
def full_state_dict(source_features) -> dict[str, torch.Tensor]:
    """A state dict with every key torchvision's full VGG16 has. The classifier tensors are
    small stand-ins (the real ones are 500 MB), which the loader must drop unread."""
    with torch.device("meta"):
        keys = list(torchvision.models.vgg16(weights=None).state_dict())
    features = {f"features.{k}": v for k, v in source_features.state_dict().items()}
    state = {key: features.get(key, torch.zeros(4)) for key in keys}
    assert any(key.startswith("classifier.") for key in state)
    return state


@pytest.fixture
def checkpoint(tmp_path, full_state_dict) -> Path:
    path = tmp_path / "vgg16-full.pth"
    torch.save(full_state_dict, path)
    return path


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, which torch.hub.get_dir() reads on every call."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    return home


def torchvision_relu_outputs(features: nn.Sequential, image: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of every ReLU in torchvision's `features`, found by module type and index."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = (image - mean) / std
    outputs = []
    with torch.no_grad():
        for module in features:
            x = module(x)
            if isinstance(module, nn.ReLU):
                outputs.append(x.clone())
    return outputs


def assert_same_features(model: VGGFeatures, source: nn.Sequential) -> None:
    image = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(5))
    expected = torchvision_relu_outputs(source, image)
    with torch.no_grad():
        got = model(image, relu_names())
    assert len(expected) == len(got) == 13
    for name, reference in zip(relu_names(), expected, strict=True):
        torch.testing.assert_close(got[name], reference, msg=f"{name} differs")


def write_cached(torch_home: Path, payload: bytes, hash_prefix: str) -> Path:
    path = torch_home / "hub" / "checkpoints" / f"vgg16-{hash_prefix}.pth"
    path.parent.mkdir(parents=True)
    path.write_bytes(payload)
    return path


# --- checkpoint forms ----------------------------------------------------------------------------


def test_full_torchvision_checkpoint_gives_torchvisions_features(checkpoint, source_features):
    assert_same_features(load_vgg(str(checkpoint)), source_features)


def test_features_only_checkpoint_gives_torchvisions_features(tmp_path, source_features):
    path = tmp_path / "features.pth"
    torch.save(source_features.state_dict(), path)  # keys "0.weight", "0.bias", ...
    assert next(iter(torch.load(path, weights_only=True))) == "0.weight"
    assert_same_features(load_vgg(str(path)), source_features)


def test_checkpoint_wrapped_in_a_state_dict_key_loads(tmp_path, full_state_dict, source_features):
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": full_state_dict, "epoch": 3}, path)
    assert_same_features(load_vgg(str(path)), source_features)


def test_vgg_features_own_state_dict_round_trips(tmp_path, checkpoint, source_features):
    path = tmp_path / "named.pth"
    torch.save(load_vgg(str(checkpoint)).state_dict(), path)  # keys "layers.conv1_1.weight"
    assert_same_features(load_vgg(str(path)), source_features)


def test_loaded_model_is_frozen_and_in_eval_mode(checkpoint):
    model = load_vgg(str(checkpoint))
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_random_weights_are_seeded(caplog):
    first, again, other = (
        load_vgg("random", seed=1),
        load_vgg("random", seed=1),
        load_vgg("random", seed=2),
    )
    conv = "layers.conv3_1.weight"
    assert torch.equal(first.state_dict()[conv], again.state_dict()[conv])
    assert not torch.equal(first.state_dict()[conv], other.state_dict()[conv])
    assert "random VGG weights" in caplog.text


# --- the hub cache -------------------------------------------------------------------------------


def test_cached_checkpoint_is_found_and_verified_offline(torch_home, checkpoint):
    payload = checkpoint.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    cached = write_cached(torch_home, payload, digest[:8])
    found = fetch_checkpoint(f"{CLOSED_PORT}/{cached.name}", progress=False)
    assert found == cached
    assert found.read_bytes() == payload


def test_cached_checkpoint_with_a_wrong_hash_is_refused(torch_home, checkpoint):
    payload = checkpoint.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    wrong = "0123abcd" if not digest.startswith("0123abcd") else "fedcba98"
    cached = write_cached(torch_home, payload, wrong)
    with pytest.raises(WeightsError, match=f"SHA-256 does not start with {wrong}"):
        fetch_checkpoint(f"{CLOSED_PORT}/{cached.name}", progress=False)
    assert cached.read_bytes() == payload  # refused, not deleted behind the user's back


def test_nothing_cached_and_offline_says_how_to_get_weights(torch_home):
    with pytest.raises(WeightsError) as excinfo:
        fetch_checkpoint(f"{CLOSED_PORT}/vgg16-0123abcd.pth", progress=False)
    message = str(excinfo.value)
    assert "neural-style fetch-weights" in message
    assert "--weights" in message
    checkpoints = torch_home / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())  # no partial file left


def test_url_without_a_hash_in_its_name_is_refused(torch_home):
    with pytest.raises(WeightsError, match="expected hash"):
        fetch_checkpoint(f"{CLOSED_PORT}/vgg16.pth", progress=False)


def test_cache_path_follows_torch_home(torch_home):
    path = weights.checkpoint_cache_path("https://example.invalid/models/vgg16-397923af.pth")
    assert path == torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"


# --- files that must be refused ------------------------------------------------------------------


def test_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_vgg(str(tmp_path / "nowhere.pth"))


def test_corrupt_checkpoint_is_refused(tmp_path):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_vgg(str(path))


def test_pickle_with_an_arbitrary_object_is_not_unpickled(tmp_path, full_state_dict):
    path = tmp_path / "object.pth"
    torch.save({**full_state_dict, "extra": NotATensor()}, path)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_vgg(str(path))


@pytest.mark.parametrize(
    "payload", [{"features.0.weight": "text"}, [torch.zeros(3)], torch.zeros(3)]
)
def test_checkpoint_that_is_not_a_dict_of_tensors_is_refused(tmp_path, payload):
    path = tmp_path / "odd.pth"
    torch.save(payload, path)
    with pytest.raises(WeightsError, match="does not hold a state dict of tensors"):
        load_vgg(str(path))


def test_checkpoint_with_a_wrong_shape_names_the_key(tmp_path, full_state_dict):
    path = tmp_path / "wrong-shape.pth"
    torch.save({**full_state_dict, "features.2.weight": torch.zeros(64, 64, 5, 5)}, path)
    with pytest.raises(WeightsError, match=r"features\.2\.weight has shape \(64, 64, 5, 5\)"):
        load_vgg(str(path))


def test_checkpoint_missing_a_layer_is_refused(tmp_path, full_state_dict):
    path = tmp_path / "missing.pth"
    torch.save({k: v for k, v in full_state_dict.items() if k != "features.28.bias"}, path)
    message = r"lacks 1 VGG tensors, e\.g\. features\.28\.bias \(conv5_3\)"
    with pytest.raises(WeightsError, match=message):
        load_vgg(str(path))


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("fc.weight", "a tensor VGG vgg16 does not: fc.weight"),
        ("features.31.weight", "a tensor VGG vgg16 does not: features.31.weight"),
        ("module.features.0.weight", "unexpected key 'module.features.0.weight'"),
    ],
)
def test_checkpoint_with_foreign_keys_is_refused(tmp_path, full_state_dict, key, message):
    path = tmp_path / "foreign.pth"
    torch.save({**full_state_dict, key: torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=re.escape(message)):
        load_vgg(str(path))
