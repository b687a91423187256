"""Shared fixtures: tiny seeded test images, one warm engine with random weights, and a recorder
for progress reports. Every image is made here; no test reads a file it did not write."""

from __future__ import annotations

import os

# Read once, when torch loads its OpenMP runtime: threads waiting for work sleep instead of
# spinning. Spinning threads on cores that other processes share made a 128 px step of the
# trained engine on two threads three to five times slower than on one (285 to 554 ms against
# 100); passive, two threads took what one does there and keep their gain on an idle machine.
# The processes the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_style_daemon.engine import StyleParams, optimize
from neural_style_daemon.engine.stylize import Progress, StyleEngine
from neural_style_daemon.engine.vgg import VGGFeatures
from neural_style_daemon.imageio import save_image

ImageMaker = Callable[..., np.ndarray]


def _content(width: int, height: int, *, seed: int = 0, alpha: bool = False) -> np.ndarray:
    """Smooth colour gradients with a rectangle and a disc, plus faint seeded noise; with
    `alpha`, a varied alpha channel (a ramp with a transparent corner and random speckles)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = x / max(width - 1, 1), y / max(height - 1, 1)
    rgb = np.stack([40 + 170 * u, 60 + 150 * v, 200 - 120 * (u + v) / 2], axis=-1)
    rgb[height // 5 : height // 2, width // 6 : width // 2] = (210, 60, 50)
    disc = (x - 0.7 * width) ** 2 + (y - 0.65 * height) ** 2 < (0.18 * min(width, height)) ** 2
    rgb[disc] = (40, 170, 90)
    rgb += rng.normal(0, 4, rgb.shape)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if not alpha:
        return image
    ramp = np.clip(np.rint(255 * (0.2 + 0.8 * u)), 0, 255)
    ramp[: height // 4, : width // 4] = 0
    speckles = rng.random((height, width)) < 0.1
    ramp[speckles] = rng.integers(0, 256, int(speckles.sum()))
    return np.dstack([image, ramp.astype(np.uint8)])


def _style(width: int, height: int, *, seed: int = 1, period: float = 5.0) -> np.ndarray:
    """Strongly coloured diagonal stripes (blue and yellow) with seeded noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    stripe = np.sin((x + 0.5 * y) * 2 * np.pi / period) > 0
    rgb = np.where(stripe[..., None], (30, 50, 220), (235, 215, 40)).astype(np.float64)
    rgb += rng.normal(0, 18, rgb.shape)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _noise_style(width: int, height: int, *, seed: int = 2) -> np.ndarray:
    """Blocky seeded colour noise (4 x 4 blocks), a texture unlike the stripes."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, ((height + 3) // 4, (width + 3) // 4, 3))
    return np.kron(blocks, np.ones((4, 4, 1)))[:height, :width].astype(np.uint8)


@pytest.fixture
def make_content() -> ImageMaker:
    return _content


@pytest.fixture
def make_style() -> ImageMaker:
    return _style


@pytest.fixture
def make_noise_style() -> ImageMaker:
    return _noise_style


@pytest.fixture
def image_files(tmp_path, make_content, make_style) -> tuple[Path, Path]:
    """A content and a style image written as PNG files, for the command-line tests."""
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    save_image(make_content(80, 64), content)
    save_image(make_style(72, 72), style)
    return content, style


@pytest.fixture(scope="session")
def warm_engine() -> StyleEngine:
    """One CPU engine with seeded random VGG16 weights for the whole session (loading costs)."""
    return StyleEngine("random", "cpu")


@pytest.fixture(scope="session")
def fp32_vgg() -> VGGFeatures:
    """Seeded random VGG16 in fp32 (not the warm engine's bf16), for exactness tests."""
    torch.manual_seed(0)
    model = VGGFeatures("vgg16")
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.zeros_(module.bias)
    return model


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one CPU thread during the test: images of a few dozen pixels gain nothing from a
    second thread, and OpenMP threads that spin-wait on cores shared with other processes made
    these tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def engine(warm_engine: StyleEngine, one_thread: None) -> StyleEngine:
    """The warm engine, for a test that runs on one thread."""
    return warm_engine


def quick_params(**changes: object) -> StyleParams:
    """Parameters for a fast test job: one scale of 3 steps unless the test says otherwise."""
    values: dict[str, object] = {"iterations": 3, "min_size": 512}
    values.update(changes)
    return StyleParams(**values)


@pytest.fixture
def params() -> Callable[..., StyleParams]:
    return quick_params


@dataclass
class ProgressLog:
    """Collects the progress reports of the steps (and tiles), and apart from them the report
    before the first step (iteration 0, with the estimate); `cancel_after` makes
    `should_cancel` answer True from the given step on (it is asked once after each step)."""

    cancel_after: int | None = None
    reports: list[Progress] = field(default_factory=list)
    before_start: list[Progress] = field(default_factory=list)
    cancel_checks: int = 0

    def __call__(self, progress: Progress) -> None:
        (self.before_start if progress.iteration == 0 else self.reports).append(progress)

    def should_cancel(self) -> bool:
        self.cancel_checks += 1
        return self.cancel_after is not None and self.cancel_checks >= self.cancel_after

    @property
    def totals(self) -> list[float]:
        return [report.losses["total"] for report in self.reports]


@pytest.fixture
def progress_log() -> ProgressLog:
    return ProgressLog()


@pytest.fixture
def lbfgs_histories(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The history length of each optimiser the engine makes (one per scale run), in order:
    the real optimisers, recorded on their way out."""
    histories: list[int] = []
    make_optimizer = optimize.make_optimizer

    def recording(*args, **kwargs):
        optimizer = make_optimizer(*args, **kwargs)
        histories.append(optimizer.history)
        return optimizer

    monkeypatch.setattr(optimize, "make_optimizer", recording)
    return histories


@pytest.fixture(scope="session")
def gimp3():
    """Real GIMP 3 (see tests/gimp/setup-gimp3.sh), set up once per run."""
    from gimp_support import gimp3_or_skip

    return gimp3_or_skip()
