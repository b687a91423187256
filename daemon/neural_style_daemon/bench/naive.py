"""The naive reference: Gatys et al. as the PyTorch tutorial ("Neural Transfer Using PyTorch")
writes it, kept whole here so that nothing the engine does leaks into it.

What makes it the tutorial: the VGG layers in one nn.Sequential, truncated after the last loss
layer (relu5_1), with transparent loss modules inserted after relu4_2 (content) and relu1_1 ..
relu5_1 (style) that store their loss on each forward; fp32; one scale, the output size;
Gram matrices normalised by C*H*W; weights content 1, style 1e6; the content image as the
start; torch.optim.LBFGS (lr 1, history 100, no line search) over all iterations in one step()
call. Departure, on purpose: `max_iter` is the iteration count itself and the tolerances are
off, so the run is a fixed number of iterations (the tutorial counts closure calls across
20-iteration step() calls, and a step() that meets a tolerance only hands over to the next).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.vgg import VGGFeatures

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 1e6
HISTORY_SIZE = 100  # torch.optim.LBFGS's default, which the tutorial keeps


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    a, b, c, d = features.size()
    flat = features.view(a * b, c * d)
    return torch.mm(flat, flat.t()).div(a * b * c * d)


class ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target.detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(x, self.target)
        return x


class StyleLoss(nn.Module):
    def __init__(self, target_features: torch.Tensor) -> None:
        super().__init__()
        self.target = gram_matrix(target_features).detach()
        self.loss = torch.zeros(())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.loss = F.mse_loss(gram_matrix(x), self.target)
        return x


class Normalization(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean = mean.view(-1, 1, 1)
        self.std = std.view(-1, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.mean) / self.std


@torch.no_grad()
def build_model(
    vgg: VGGFeatures, content: torch.Tensor, style: torch.Tensor
) -> tuple[nn.Sequential, list[ContentLoss], list[StyleLoss]]:
    """The tutorial's get_style_model_and_losses: VGG's layers in order with loss modules
    inserted, cut after the last loss. `content` and `style` are 1 x 3 x H x W in [0, 1].

    The targets come from running both images through the layers alongside (the tutorial
    re-runs the partial model per loss, and needs the style image at the content's size)."""
    model = nn.Sequential(Normalization(vgg.mean.flatten(), vgg.std.flatten()))
    content_losses: list[ContentLoss] = []
    style_losses: list[StyleLoss] = []
    x_content, x_style = model(content), model(style)
    remaining = set(CONTENT_LAYERS + STYLE_LAYERS)
    for name, layer in vgg.layers.named_children():
        model.add_module(name, layer)
        x_content, x_style = layer(x_content), layer(x_style)
        if name in CONTENT_LAYERS:
            content_losses.append(ContentLoss(x_content))
            model.add_module(f"content_loss_{name}", content_losses[-1])
        if name in STYLE_LAYERS:
            style_losses.append(StyleLoss(x_style))
            model.add_module(f"style_loss_{name}", style_losses[-1])
        remaining.discard(name)
        if not remaining:
            break
    return model.eval().requires_grad_(False), content_losses, style_losses


@dataclass(frozen=True)
class NaiveRun:
    image: torch.Tensor  # 3 x H x W, clamped to [0, 1] as the tutorial's last line does
    seconds: float  # building the model (targets included) and optimising
    loop_seconds: float  # optimising only
    iterations: int  # L-BFGS iterations run
    evaluations: int  # forward + backward passes


Observer = Callable[[torch.Tensor, float], None]


def run_naive(
    vgg: VGGFeatures,
    content: torch.Tensor,
    style: torch.Tensor,
    iterations: int,
    *,
    sync: Callable[[], None] = lambda: None,
    clamp_each_evaluation: bool = True,
    on_evaluation: Observer | None = None,
) -> NaiveRun:
    """Stylise 3 x H x W `content` with `style` (both in [0, 1], on the network's device).

    `sync` waits for the device before each clock reading (CUDA is asynchronous).
    `clamp_each_evaluation` is the tutorial's clamp of the image inside the closure.
    `on_evaluation(image, seconds)` sees the image each evaluation starts from and the naive's
    time so far; the time it takes is left out of the naive's times.
    """
    sync()
    start = time.perf_counter()
    model, content_losses, style_losses = build_model(vgg, content[None], style[None])
    image = content[None].contiguous().clone().requires_grad_(True)  # LBFGS views it flat
    # Tolerances off: on the trained network's loss at 512 px the defaults end the run after
    # one iteration, where the tutorial's loop would simply call step() again.
    optimizer = torch.optim.LBFGS(
        [image],
        lr=1.0,
        max_iter=iterations,
        history_size=HISTORY_SIZE,
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )
    evaluations, observing = 0, 0.0

    def closure() -> torch.Tensor:
        nonlocal evaluations, observing
        if clamp_each_evaluation:
            with torch.no_grad():
                image.clamp_(0, 1)
        if on_evaluation is not None:
            sync()
            entry = time.perf_counter()
            on_evaluation(image.detach()[0], entry - start - observing)
            sync()
            observing += time.perf_counter() - entry
        optimizer.zero_grad()
        model(image)
        style_score = STYLE_WEIGHT * sum(loss.loss for loss in style_losses)
        content_score = CONTENT_WEIGHT * sum(loss.loss for loss in content_losses)
        loss = style_score + content_score
        assert isinstance(loss, torch.Tensor)  # sum() over losses, of which there are some
        loss.backward()
        evaluations += 1
        return loss

    sync()
    loop_start = time.perf_counter()
    optimizer.step(closure)
    with torch.no_grad():
        image.clamp_(0, 1)
    sync()
    end = time.perf_counter() - observing
    done = optimizer.state[optimizer.param_groups[0]["params"][0]].get("n_iter", 0)
    return NaiveRun(
        image=image.detach()[0],
        seconds=end - start,
        loop_seconds=end - loop_start,
        iterations=int(done),
        evaluations=evaluations,
    )
