"""VGG feature extractor with named layers (relu1_1 ... relu5_3), frozen and truncated per job."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .layers import BLOCK_DEPTHS, BLOCK_WIDTHS, layer_names

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# A max-pool whose indices would take more memory than this finds its maxima again in the
# backward pass instead of keeping them (MaxPool).
MAX_KEPT_POOL_INDICES_BYTES = 128 * 2**20


class MaxPool(nn.Module):
    """VGG's 2 x 2 max-pool, stride 2. For the backward pass autograd keeps the maxima's
    positions as int64, four times the size of the bf16 output: a quarter of all an
    evaluation keeps. A pool whose indices would take more than MAX_KEPT_POOL_INDICES_BYTES
    (pool1 above 1024 x 1024 px, pool2 above 1448, every pool at 4096) keeps only its input,
    which the ReLU before it keeps anyway, and finds the same maxima again when the gradient
    comes: one more pooling pass over that layer, the same gradient to the bit, for no
    measurable time (docs/benchmarks.md, "The engine's measured
    choices")."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        indices_bytes = 8 * x.shape[0] * x.shape[1] * (x.shape[2] // 2) * (x.shape[3] // 2)
        if x.requires_grad and indices_bytes > MAX_KEPT_POOL_INDICES_BYTES:
            return _MaxPoolFindingMaximaAgain.apply(x)
        return F.max_pool2d(x, kernel_size=2, stride=2)


class _MaxPoolFindingMaximaAgain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.max_pool2d(x, kernel_size=2, stride=2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        _, indices = F.max_pool2d_with_indices(x, kernel_size=(2, 2), stride=(2, 2))
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices
        )


class VGGFeatures(nn.Module):
    """VGG `features` with named modules. `forward` stops after the deepest requested layer,
    so a job that only needs relu4_2 never pays for block 5 (the truncation the paper implies).

    Takes images in [0, 1] RGB and applies ImageNet normalisation itself. The weights are
    frozen: the optimisation only needs gradients with respect to the image.
    """

    mean: torch.Tensor  # buffers: they move with the module
    std: torch.Tensor

    def __init__(self, arch: str = "vgg16") -> None:
        super().__init__()
        if arch not in BLOCK_DEPTHS:
            raise ValueError(f"unknown VGG architecture {arch!r}")
        self.arch = arch
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for name in layer_names(arch):
            if name.startswith("conv"):
                out_channels = BLOCK_WIDTHS[int(name[4]) - 1]
                modules[name] = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
                in_channels = out_channels
            elif name.startswith("relu"):
                modules[name] = nn.ReLU(inplace=False)
            else:
                modules[name] = MaxPool()
        self.layers = nn.Sequential(modules)
        self.layer_names = frozenset(modules)  # checked on every call: computed once
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # The fastest convolutions (cuDNN on tensor cores, oneDNN on AMX) want NHWC, in bf16:
        # the engine turns both on where bf16 is fast (optimize.fast_math reads the second).
        self.channels_last = False
        self.mixed_precision = False
        self.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(
        self,
        image: torch.Tensor,
        wanted: Iterable[str],
        tap: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Features of `image` (N x 3 x H x W in [0, 1]) at the `wanted` layer names. With
        `tap`, the features at each wanted layer pass through `tap(name, features)` on their
        way on: what it returns is what the next layer gets (the objective's losses hook in
        there, optimize.Objective)."""
        wanted = set(wanted)
        unknown = wanted - self.layer_names
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}")
        x = (image - self.mean.to(image.dtype)) / self.std.to(image.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features: dict[str, torch.Tensor] = {}
        for name, module in self.layers.named_children():
            x = module(x)
            if name in wanted:
                if tap is not None:
                    x = tap(name, x)
                features[name] = x
                if len(features) == len(wanted):
                    break
        return features


def fast_math(model: VGGFeatures):
    """bf16 autocast where the engine chose it for this model (precision "auto" on CUDA, or on
    a CPU with bf16 matrix units: the convolutions dominate); otherwise fp32. Without autocast's
    cast cache, which CUDA graph capture cannot have and which would hold only the image's cast
    (the weights need no gradient, so they are not cached)."""
    if model.mixed_precision:
        return torch.autocast(model.device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()
