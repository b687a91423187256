"""Optical flow, the backward warp and the occlusion mask (engine/flow.py) on synthetic motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_style_daemon.engine.flow import (
    grey,
    optical_flow,
    trusted_pixels,
    warp,
    warp_array,
    warping_error,
)


def texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth seeded colour noise: features everywhere for the flow to follow."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 4 + 2, width // 4 + 2, 3))
    smooth = np.kron(coarse, np.ones((4, 4, 1)))[:height, :width]
    for axis in (0, 1):  # a box blur of the blocks' edges
        smooth = (smooth + np.roll(smooth, 1, axis) + np.roll(smooth, -1, axis)) / 3
    return np.rint(smooth * 255).astype(np.uint8)


def shifted_pair(shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Two crops of one texture, the second `shift` px further left: its content moves right."""
    big = texture(64, 96 + shift)
    return big[:, shift : shift + 96].copy(), big[:, :96].copy()


def test_warping_frame_0_by_the_flow_reproduces_frame_1_away_from_the_border() -> None:
    first, second = shifted_pair(3)
    backward = optical_flow(grey(second), grey(first))  # frame 1 to frame 0
    inner = (slice(8, -8), slice(8, -8))
    assert np.median(backward[inner][..., 0]) == pytest.approx(-3, abs=0.1)
    assert np.median(backward[inner][..., 1]) == pytest.approx(0, abs=0.1)
    warped = warp_array(first.astype(np.float32), backward)
    moved = np.abs(first.astype(np.float32) - second)[inner].mean()
    assert np.abs(warped - second)[inner].mean() < 0.1 * moved


def test_the_tensor_warp_is_the_array_warp() -> None:
    first, second = shifted_pair(2)
    backward = optical_flow(grey(second), grey(first))
    image = torch.from_numpy(first).permute(2, 0, 1).float() / 255
    on_tensor = warp(image, backward).permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(on_tensor, warp_array(first.astype(np.float32), backward), atol=0.05)


def moving_square(shift: int) -> tuple[np.ndarray, np.ndarray]:
    """A still background with a 16 px square of another texture that moves `shift` px right."""
    background, square = texture(64, 96, seed=1), texture(16, 16, seed=2)
    first, second = background.copy(), background.copy()
    first[24:40, 20:36] = square
    second[24:40, 20 + shift : 36 + shift] = square
    return first, second


def test_the_strip_the_moving_square_uncovers_is_marked() -> None:
    first, second = moving_square(6)
    backward = optical_flow(grey(second), grey(first))
    forward = optical_flow(grey(first), grey(second))
    trusted = trusted_pixels(forward, backward)
    assert trusted[26:38, 20:26].mean() < 0.2  # what the square covered in frame 0
    assert trusted[:16].mean() > 0.9 and trusted[48:].mean() > 0.9  # the still background


def test_what_comes_in_from_outside_the_frame_is_not_trusted() -> None:
    first, second = shifted_pair(3)
    backward = optical_flow(grey(second), grey(first))
    trusted = trusted_pixels(optical_flow(grey(first), grey(second)), backward)
    assert trusted[:, :3].max() == 0
    assert trusted[8:-8, 8:-8].mean() > 0.9


def test_the_warping_error_of_a_result_that_moves_with_its_content_is_small() -> None:
    first, second = shifted_pair(3)
    backward = optical_flow(grey(second), grey(first))
    trusted = trusted_pixels(optical_flow(grey(first), grey(second)), backward)
    still = warping_error(first, first, backward, trusted)  # a result that stayed put
    assert warping_error(first, second, backward, trusted) < 0.1 * still


def test_frames_of_different_sizes_have_no_flow() -> None:
    with pytest.raises(ValueError, match="different sizes"):
        optical_flow(np.zeros((32, 32), np.uint8), np.zeros((32, 40), np.uint8))
