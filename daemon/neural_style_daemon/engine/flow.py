"""Optical flow between frames, the backward warp along it, and where it cannot be trusted.

Conventions: a flow is an H x W x 2 float32 array of (dx, dy) in pixels, from frame `a` to
frame `b`: the pixel at x in `a` is at x + flow(x) in `b`. Warping `b` by that flow samples
`b` at x + flow(x) for every x of `a`, which brings `b` into `a`'s place (a backward warp: every
pixel of the result has a value, none is left as a hole).

The flow is OpenCV's DIS (Kroeger et al. 2016, "Fast Optical Flow using Dense Inverse
Search"), on grey frames; Ruder et al. used DeepFlow or EpicFlow, slower by orders of magnitude
and not in opencv-python's standard build. The occlusion test is theirs.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

# Ruder et al. 2016, section 3.1: a pixel is disoccluded where the forward flow, warped back,
# does not cancel the backward flow: |w~ + w^|^2 > CONSISTENCY * (|w~|^2 + |w^|^2) +
# CONSISTENCY_SLACK (pixels squared) ...
CONSISTENCY = 0.01
CONSISTENCY_SLACK = 0.5
# ... and on a motion boundary where the flow's gradient is large: |grad u^|^2 + |grad v^|^2 >
# BOUNDARY * |w^|^2 + BOUNDARY_SLACK.
BOUNDARY = 0.01
BOUNDARY_SLACK = 0.002


def grey(rgb: np.ndarray) -> np.ndarray:
    """An H x W x 3 (or 4) uint8 image as H x W uint8 luma (ITU-R 601), what the flow sees."""
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)


def optical_flow(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The flow from `source` to `target` (H x W uint8 grey frames of one size): H x W x 2."""
    if source.shape != target.shape:
        raise ValueError(f"frames of different sizes: {source.shape} and {target.shape}")
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    # None asks for a new flow (a given one is taken as the start), which OpenCV's stubs omit.
    flow = dis.calc(np.ascontiguousarray(source), np.ascontiguousarray(target), None)  # type: ignore[call-overload]
    return np.asarray(flow, dtype=np.float32)


def sample_positions(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where `flow` samples: (x + dx, y + dy) for every pixel, as two H x W float32 arrays."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return xs + flow[..., 0], ys + flow[..., 1]


def warp_array(array: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`array` (H x W or H x W x C, float32 or uint8) sampled along `flow`: bilinear, the
    border's values repeated outside the frame."""
    map_x, map_y = sample_positions(flow)
    return cv2.remap(array, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp(image: torch.Tensor, flow: np.ndarray) -> torch.Tensor:
    """A 3 x H x W tensor sampled along `flow` (H x W x 2): `warp_array` on the image's device."""
    height, width = flow.shape[:2]
    map_x, map_y = sample_positions(flow)
    # grid_sample reads positions in [-1, 1], corner pixels' centres at the ends.
    grid = np.stack([map_x * (2 / max(width - 1, 1)) - 1, map_y * (2 / max(height - 1, 1)) - 1], -1)
    grid_tensor = torch.from_numpy(grid).to(image.device, torch.float32)[None]
    warped = F.grid_sample(
        image[None].float(), grid_tensor, mode="bilinear", padding_mode="border", align_corners=True
    )
    return warped[0]


def trusted_pixels(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Where the backward flow (frame t to t-1) can be followed, as an H x W float32 mask at
    frame t: 1 where it can, 0 where frame t shows what frame t-1 did not (disoccluded: the
    forward flow, t-1 to t, does not lead back), on a motion boundary, or where the flow comes
    from outside frame t-1 (Ruder et al. mark no such pixels: their warp had no border)."""
    warped_forward = warp_array(forward, backward)  # w~(x) = w(x + w^(x))
    mismatch = np.square(warped_forward + backward).sum(-1)
    lengths = np.square(warped_forward).sum(-1) + np.square(backward).sum(-1)
    disoccluded = mismatch > CONSISTENCY * lengths + CONSISTENCY_SLACK
    gradient = sum(
        np.square(np.gradient(backward[..., channel], axis=axis))
        for channel in (0, 1)
        for axis in (0, 1)
    )
    boundary = gradient > BOUNDARY * np.square(backward).sum(-1) + BOUNDARY_SLACK
    map_x, map_y = sample_positions(backward)
    height, width = backward.shape[:2]
    outside = (map_x < 0) | (map_x > width - 1) | (map_y < 0) | (map_y > height - 1)
    return (~(disoccluded | boundary | outside)).astype(np.float32)


def warping_error(
    earlier: np.ndarray, later: np.ndarray, backward: np.ndarray, trusted: np.ndarray
) -> float:
    """The temporal warping error of two consecutive results (H x W x 3 uint8): the mean
    absolute difference, in grey levels over the channels, between `later` and `earlier`
    warped along `backward` (the content frames' flow from the later to the earlier), on the
    `trusted` pixels (trusted_pixels) alone."""
    warped = warp_array(earlier[..., :3].astype(np.float32), backward)
    difference = np.abs(later[..., :3].astype(np.float32) - warped).mean(-1)
    kept = trusted > 0.5
    if not kept.any():
        raise ValueError("no pixel the flow can follow")
    return float(difference[kept].mean())
