"""Colour preservation (Gatys, Bethge, Hertzmann and Shechtman 2016, "Preserving Color in Neural
Artistic Style Transfer"). Images are 3 x H x W float tensors in [0, 1]."""

from __future__ import annotations

import torch

# NTSC YIQ: Y is luminance, I and Q carry the chroma the paper keeps from the content.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    matrix = _RGB_TO_YIQ.to(image)
    return torch.einsum("ij,jhw->ihw", matrix, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    matrix = torch.linalg.inv(_RGB_TO_YIQ.double()).to(image)
    return torch.einsum("ij,jhw->ihw", matrix, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The luminance as a 3-channel gray image, which VGG takes as it is."""
    return rgb_to_yiq(image)[:1].expand(3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style's luminance, shifted and scaled to the content's luminance mean and deviation
    (the paper's step that keeps the content's brightness histogram)."""
    style_y = rgb_to_yiq(style)[0]
    content_y = rgb_to_yiq(content)[0]
    standardised = (style_y - style_y.mean()) / (style_y.std() + 1e-6)
    matched = standardised * content_y.std() + content_y.mean()
    return matched.clamp(0, 1).expand(3, -1, -1).contiguous()


def with_chroma_of(luma_image: torch.Tensor, chroma_source: torch.Tensor) -> torch.Tensor:
    """Recombine: Y from `luma_image` (its first channel), I and Q from `chroma_source`."""
    yiq = rgb_to_yiq(chroma_source)
    yiq = torch.cat([rgb_to_yiq(luma_image)[:1], yiq[1:]])
    return yiq_to_rgb(yiq).clamp(0, 1)


def match_color_statistics(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image linearly transformed so its RGB mean and covariance equal the content's:
    x' = C_c^(1/2) C_s^(-1/2) (x - mu_s) + mu_c, with symmetric matrix square roots."""
    s = style.reshape(3, -1).double()
    c = content.reshape(3, -1).double()
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    eye = torch.eye(3, dtype=torch.float64, device=s.device) * 1e-5
    cov_s = torch.cov(s) + eye
    cov_c = torch.cov(c) + eye
    transform = _sqrtm(cov_c) @ torch.linalg.inv(_sqrtm(cov_s))
    matched = transform @ (s - mu_s) + mu_c
    return matched.reshape(style.shape).to(style.dtype).clamp(0, 1)


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
