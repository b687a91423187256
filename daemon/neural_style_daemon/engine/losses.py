"""The Gatys et al. losses as small modules: content, style (Gram matrices), total variation.

Departure from the paper: each content and style term is divided by the mean square of its
target, so a term reads as a relative error and the weights mean the same whatever the layer's
activation scale (which differs by orders of magnitude between relu1_1 and relu5_1, and between
ImageNet and random weights). Equal per-layer weights then balance the layers, as Gatys et al.
intended with their per-layer normalisation, and one `strength` value maps to a stable
style/content balance.

Regions (Gatys et al. 2017, "Controlling Perceptual Factors"): a style loss may hold one target
per region of the image and a mask per region at its layer's size. Each region's Gram matrix is
that of the masked features, normalised by the mask's mass (the sum of its squares) instead of
the position count, so it is the region's own average statistics; its loss is weighted by the
mask's mean square, so each pixel feels the same style force whatever its region's area.
"""

from __future__ import annotations

import torch
from torch import nn


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix of N x C x H x W features, normalised by C x H x W, returned in fp32 (fp64
    for fp64 features).

    The product runs in the features' own dtype. For bf16 features (under autocast) the matrix
    units accumulate in fp32 and only the C x C result is rounded to bf16: faster than upcasting
    the features, for the same steps to each loss (docs/benchmarks.md, "The engine's measured
    choices")."""
    n, c, h, w = features.shape
    # Autocast would pick the product's dtype itself; the features' dtype decides here.
    with torch.autocast(features.device.type, enabled=False):
        if n == 1:
            return _gram_of_one(features)[None]
        flat = features.reshape(n, c, h * w)
        gram = torch.bmm(flat, flat.transpose(1, 2))
        return gram.to(_result_dtype(features)) / (c * h * w)


def _gram_of_one(features: torch.Tensor) -> torch.Tensor:
    """The C x C Gram of 1 x C x H x W features, normalised, without autograd."""
    flat, rows_are_pixels = _as_matrix(features)
    with torch.autocast(features.device.type, enabled=False):
        gram = flat.T @ flat if rows_are_pixels else flat @ flat.T
    return gram.to(_result_dtype(features)).div_(features[0].numel())


def _features_gradient(
    features: torch.Tensor, grad_gram: torch.Tensor, passed: torch.Tensor | None = None
) -> torch.Tensor:
    """The gradient at 1 x C x H x W features whose C x C Gram has gradient `grad_gram`, plus
    `passed` (the gradient from the layers above, when there is one): F (dG + dG^T) / (C H W)
    as one product that adds `passed` as it writes, in the features' own layout (channels-last
    stays channels-last)."""
    _, c, h, w = features.shape
    both = (grad_gram + grad_gram.T).div_(features[0].numel()).to(features.dtype)
    flat, rows_are_pixels = _as_matrix(features)
    with torch.autocast(features.device.type, enabled=False):
        if rows_are_pixels:  # HW x C
            if passed is None:
                return (flat @ both).reshape(1, h, w, c).permute(0, 3, 1, 2)
            passed = passed.contiguous(memory_format=torch.channels_last)
            into = passed.permute(0, 2, 3, 1).reshape(h * w, c)
            return torch.addmm(into, flat, both).reshape(1, h, w, c).permute(0, 3, 1, 2)
        if passed is None:
            return (both @ flat).reshape(1, c, h, w)
        into = passed.contiguous().reshape(c, h * w)
        return torch.addmm(into, both, flat).reshape(1, c, h, w)


def _result_dtype(features: torch.Tensor) -> torch.dtype:
    return torch.promote_types(features.dtype, torch.float32)


def _as_matrix(features: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """1 x C x H x W features as a matrix without copying: HW x C for channels-last (True),
    C x HW otherwise (False)."""
    _, c, h, w = features.shape
    if c > 1 and features.is_contiguous(memory_format=torch.channels_last):
        return features.permute(0, 2, 3, 1).reshape(h * w, c), True
    return features.reshape(c, h * w), False


def masked(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """N x C x h x w features times a 1 x 1 x h x w mask, in the features' dtype and layout."""
    return features * mask.to(features.dtype)


def mask_mass(mask: torch.Tensor) -> float:
    """The sum of a mask's squares: the positions a guided Gram matrix averages over."""
    return mask.double().square().sum().item()


def guided_gram(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Gram matrix of 1 x C x h x w features inside a (soft) 1 x 1 x h x w mask, normalised
    by C times the mask's mass: with an all-ones mask, `gram_matrix`."""
    positions = features.shape[-2] * features.shape[-1]
    return gram_matrix(masked(features, mask)) * (positions / max(mask_mass(mask), 1e-12))


def relative_scale(target: torch.Tensor) -> float:
    """1 / mean square of the target; 1 for an all-zero target (a black image through
    bias-free layers), where there is no scale to divide out."""
    mean_square = target.square().mean().item()
    return 1.0 / mean_square if mean_square > 0 else 1.0


class ContentLoss(nn.Module):
    """Relative mean squared error of features against the content's features."""

    target: torch.Tensor  # a buffer: moves with the module

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.scale = relative_scale(self.target)

    def tap(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the features to pass on to the next layer, the loss): the mean squared error of
        the features (in fp32) times `scale`, with its gradient taken only when the backward
        pass reaches this layer (see `_StyleTap`)."""
        return _ContentTap.apply(features, self.target, self.scale)


class StyleLoss(nn.Module):
    """Relative mean squared error of the Gram matrix against a (blended) target Gram; with
    `masks`, the sum over regions of each region's guided Gram against its own target (see the
    module's docstring)."""

    target: torch.Tensor  # R x C x C: one target per region (R = 1 without masks)
    masks: torch.Tensor | None  # R x 1 x h x w at the layer's size; None: the whole image

    def __init__(self, target_gram: torch.Tensor, masks: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("target", target_gram.detach().float())
        self.register_buffer("masks", None if masks is None else masks.detach().float())
        self.scales = tuple(relative_scale(target) for target in self.target)
        self.scale = self.scales[0]
        if self.masks is None:
            self.region_weights: tuple[float, ...] = (1.0,)
        else:
            if len(self.masks) != len(self.target):
                raise ValueError(f"{len(self.masks)} masks for {len(self.target)} targets")
            positions = self.masks.shape[-2] * self.masks.shape[-1]
            self.region_weights = tuple(mask_mass(mask) / positions for mask in self.masks)

    def tap(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the features to pass on to the next layer, the loss) for one image's features: the
        mean squared error of their Gram matrix (or of each region's) times `scale`, with its
        gradient taken only when the backward pass reaches this layer (see `_StyleTap`)."""
        if self.masks is None:
            return _StyleTap.apply(features, self.target, self.scale)
        return _GuidedStyleTap.apply(
            features, self.target, self.masks, self.scales, self.region_weights
        )


class _StyleTap(torch.autograd.Function):
    """A style loss on one image's features that also passes the features on to the next
    layer, so that its backward runs when the backward pass reaches the layer, with the
    gradient from above in hand, instead of first thing.

    With the loss as a separate branch, autograd computes every loss layer's gradient at the
    start of the backward pass (the losses come last in the forward) and holds it until the
    pass arrives there: a second copy of every loss layer's features on top of everything
    saved, the evaluation's peak memory (a quarter more per pixel). It then adds the two
    gradients in a separate pass over the layer. Here the loss's gradient is made where it is
    needed, and the product that makes it adds the gradient from above as it writes.
    (`_ContentTap` does the same for the content loss.)"""

    @staticmethod
    def forward(ctx, features, target, scale):
        ctx.set_materialize_grads(False)  # None from above: the deepest layer
        ctx.scale = scale
        difference = _gram_of_one(features)[None] - target
        ctx.save_for_backward(features, difference)
        return _passed_on(features), difference.square().mean() * scale

    @staticmethod
    def backward(ctx, passed, grad_loss):
        features, difference = ctx.saved_tensors
        if grad_loss is None:
            return passed, None, None
        grad_gram = difference[0] * (grad_loss * (2 * ctx.scale / difference.numel()))
        return _features_gradient(features, grad_gram, passed), None, None


class _GuidedStyleTap(torch.autograd.Function):
    """`_StyleTap` for regions: the loss of each region's guided Gram matrix, weighted by its
    mask's mean square, and its gradient, the masked features' Gram gradient masked again. The
    masked features are made again in the backward rather than kept."""

    @staticmethod
    def forward(ctx, features, targets, masks, scales, weights):
        ctx.set_materialize_grads(False)
        ctx.scales, ctx.weights = scales, weights
        loss = features.new_zeros((), dtype=_result_dtype(features))
        differences = torch.zeros_like(targets, dtype=loss.dtype)
        for region, (mask, weight) in enumerate(zip(masks, weights, strict=True)):
            if weight == 0:  # a region with no pixels at this layer's resolution
                continue
            differences[region] = guided_gram(features, mask[None])[0] - targets[region]
            loss = loss + differences[region].square().mean() * (scales[region] * weight)
        ctx.save_for_backward(features, masks, differences)
        return _passed_on(features), loss

    @staticmethod
    def backward(ctx, passed, grad_loss):
        features, masks, differences = ctx.saved_tensors
        if grad_loss is None:
            return passed, None, None, None, None
        gradient = passed
        for region, (mask, weight) in enumerate(zip(masks, ctx.weights, strict=True)):
            if weight == 0:
                continue
            # The region weight and the guided Gram's normalisation (positions / mass) cancel.
            difference = differences[region]
            grad_gram = difference * (grad_loss * (2 * ctx.scales[region] / difference.numel()))
            inside = masked(_features_gradient(masked(features, mask[None]), grad_gram), mask[None])
            gradient = inside if gradient is None else gradient + inside
        return gradient.to(features.dtype), None, None, None, None


class _ContentTap(torch.autograd.Function):
    """The content loss as `_StyleTap` does the style loss. It keeps the features (which the
    ReLU before them keeps anyway) rather than their fp32 copy, and recomputes the difference."""

    @staticmethod
    def forward(ctx, features, target, scale):
        ctx.set_materialize_grads(False)
        ctx.scale = scale
        ctx.save_for_backward(features, target)
        return _passed_on(features), (features.float() - target).square().mean() * scale

    @staticmethod
    def backward(ctx, passed, grad_loss):
        features, target = ctx.saved_tensors
        if grad_loss is None:
            return passed, None, None
        scale = grad_loss * (2 * ctx.scale / features.numel())
        grad = (features.float() - target).mul_(scale)
        if passed is not None:
            grad = grad + passed  # in fp32, or wider if the gradient from above is
        return grad.to(features.dtype), None, None


def _passed_on(features: torch.Tensor) -> torch.Tensor:
    """The features as a tap's second output: the same memory, which autograd ties to the
    tap. Not `view_as`: it renumbers the batch dimension's stride, and the max-pool after a
    tapped layer then no longer sees channels-last (4x slower, with copies in the backward)."""
    return features.detach()


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of neighbouring pixels: penalises high-frequency noise."""
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return dx.square().mean() + dy.square().mean()


class TemporalLoss(nn.Module):
    """Ruder et al. 2016's short-term temporal loss: the squared difference between the image
    and the frame before's result warped to this frame, weighted per pixel (0 where the flow
    cannot follow the pixel: occluded, on a motion boundary, come in from outside the frame) and
    averaged over every pixel and channel, as the paper's 1/D does, so that each pixel it holds
    feels the same force whatever the share of pixels it lets go."""

    target: torch.Tensor  # 1 x 3 x H x W
    weights: torch.Tensor  # 1 x 1 x H x W, 0..1

    def __init__(self, target: torch.Tensor, weights: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().float())
        self.register_buffer("weights", weights.detach().float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (self.weights * (image.float() - self.target).square()).mean()
