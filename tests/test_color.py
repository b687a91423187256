"""Colour preservation helpers: YIQ conversion, luminance transfer and colour statistics."""

from __future__ import annotations

import pytest
import torch

from neural_style_daemon.engine import color


def stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    return pixels.mean(1), torch.cov(pixels)


def correlated_image(seed: int, mix: list[list[float]], centre: float, spread: float):
    """A 3 x 40 x 48 image whose channels mix three seeded noise sources, kept well inside
    [0, 1] so that no clamping disturbs the statistics."""
    generator = torch.Generator().manual_seed(seed)
    sources = torch.randn(3, 40 * 48, generator=generator, dtype=torch.float64).clamp(-2.5, 2.5)
    image = torch.tensor(mix, dtype=torch.float64) @ sources * spread + centre
    assert image.min() > 0 and image.max() < 1
    return image.reshape(3, 40, 48).float()


@pytest.fixture
def content() -> torch.Tensor:
    return correlated_image(1, [[1.0, 0.3, 0.0], [0.2, 0.8, 0.1], [-0.4, 0.1, 0.6]], 0.5, 0.08)


@pytest.fixture
def style() -> torch.Tensor:
    return correlated_image(2, [[0.9, 0.3, 0.0], [0.2, 1.0, 0.1], [0.1, 0.3, 0.8]], 0.35, 0.07)


def test_match_color_statistics_gives_the_contents_mean_and_covariance(content, style):
    matched = color.match_color_statistics(style, content)
    assert matched.shape == style.shape and matched.dtype == style.dtype
    content_mean, content_cov = stats(content)
    style_mean, style_cov = stats(style)
    assert (style_mean - content_mean).abs().max() > 0.1  # far apart before
    mean, cov = stats(matched)
    torch.testing.assert_close(mean, content_mean, atol=1e-5, rtol=0)
    # Within the 1e-5 the function adds to each covariance's diagonal (for a stable inverse),
    # which is small beside this style's smallest colour variance.
    torch.testing.assert_close(cov, content_cov, atol=3e-5, rtol=0.01)
    assert (style_cov - content_cov).abs().max() > 1e-3


def test_match_color_statistics_of_an_image_with_itself_changes_nothing(content):
    torch.testing.assert_close(
        color.match_color_statistics(content, content), content, atol=1e-5, rtol=0
    )


def test_match_color_statistics_keeps_the_result_in_range(content):
    wild = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(3))
    matched = color.match_color_statistics(content, wild)
    assert matched.min() >= 0 and matched.max() <= 1


def test_yiq_round_trip(content):
    torch.testing.assert_close(
        color.yiq_to_rgb(color.rgb_to_yiq(content)), content, atol=1e-5, rtol=0
    )


def test_white_has_full_luminance_and_no_chroma():
    yiq = color.rgb_to_yiq(torch.ones(3, 2, 2))
    torch.testing.assert_close(yiq[0], torch.ones(2, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(yiq[1:], torch.zeros(2, 2, 2), atol=1e-5, rtol=0)


def test_luminance_is_gray_with_the_images_y(content):
    gray = color.luminance(content)
    assert gray.shape == content.shape
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[0], gray[2])
    torch.testing.assert_close(gray[0], color.rgb_to_yiq(content)[0])


def test_match_luminance_takes_the_contents_mean_and_deviation(content, style):
    matched = color.match_luminance(style, content)[0]
    content_y = color.rgb_to_yiq(content)[0]
    assert matched.mean().item() == pytest.approx(content_y.mean().item(), abs=1e-4)
    assert matched.std().item() == pytest.approx(content_y.std().item(), rel=1e-3)


def test_with_chroma_of_takes_y_from_one_image_and_iq_from_the_other(content, style):
    combined = color.rgb_to_yiq(color.with_chroma_of(color.luminance(style), content))
    torch.testing.assert_close(combined[0], color.rgb_to_yiq(style)[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(combined[1:], color.rgb_to_yiq(content)[1:], atol=1e-5, rtol=0)
