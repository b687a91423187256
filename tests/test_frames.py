"""Animation frames as a sequence (engine/frames.py), with seeded random weights: the mechanics
of the warm start and the temporal loss, not the look (docs/quality.md has that)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.flow import grey, optical_flow, trusted_pixels, warping_error
from neural_style_daemon.engine.frames import stylize_frames
from neural_style_daemon.engine.losses import TemporalLoss
from neural_style_daemon.engine.optimize import LossTerms
from neural_style_daemon.engine.pyramid import plan_scales
from neural_style_daemon.errors import InvalidInputError


def pan(make_content, frames: int = 3, step: int = 2) -> list[np.ndarray]:
    """Crops of 48 x 40 sliding right over one content by `step` px a frame."""
    wide = make_content(48 + step * frames, 40)
    return [wide[:, i * step : i * step + 48].copy() for i in range(frames)]


def sequence_error(frames: list[np.ndarray], results: list[np.ndarray]) -> float:
    errors = []
    for t in range(len(frames) - 1):
        earlier, later = grey(frames[t]), grey(frames[t + 1])
        backward, forward = optical_flow(later, earlier), optical_flow(earlier, later)
        trusted = trusted_pixels(forward, backward)
        errors.append(warping_error(results[t], results[t + 1], backward, trusted))
    return float(np.mean(errors))


@pytest.mark.slow
def test_the_temporal_loss_lowers_the_warping_error_against_independent_frames(
    engine, make_content, make_style, params
):
    frames, styles = pan(make_content), [make_style(40, 40)]
    job = params(iterations=8, tolerance=0)
    independent = [engine.stylize(frame, styles, job).image for frame in frames]
    sequence = stylize_frames(engine, frames, styles, job)
    assert not sequence.cancelled and len(sequence.images) == 3
    assert sequence_error(frames, sequence.images) < 0.5 * sequence_error(frames, independent)
    # The warm start alone drifts further from the frame before than the loss lets it.
    unheld = stylize_frames(engine, frames, styles, job.with_overrides(temporal_weight=0.0))
    assert sequence_error(frames, sequence.images) < 0.5 * sequence_error(frames, unheld.images)


def test_each_frame_is_handed_out_as_it_is_done_with_progress_over_the_sequence(
    engine, make_content, make_style, params, progress_log
):
    handed: list[tuple[int, tuple[int, ...]]] = []
    seen_reports: list[int] = []

    def on_frame(index: int, image: np.ndarray) -> None:
        handed.append((index, image.shape))
        seen_reports.append(len(progress_log.reports))

    frames = pan(make_content)
    result = stylize_frames(
        engine,
        frames,
        [make_style(40, 40)],
        params(initial_iterations=4, iterations=3, tolerance=0),
        on_progress=progress_log,
        on_frame=on_frame,
    )
    assert handed == [(0, (40, 48, 3)), (1, (40, 48, 3)), (2, (40, 48, 3))]
    assert result.steps == [4, 3, 3]
    assert seen_reports == [4, 7, 10]  # each frame out before the next one's first step
    reports = progress_log.reports
    assert [r.frame for r in reports] == [1] * 4 + [2] * 3 + [3] * 3
    assert {r.frames for r in reports} == {3}
    done = [r.work_done for r in reports]
    assert done == sorted(done) and done[-1] == pytest.approx(1.0)
    assert "temporal" not in reports[0].losses and "temporal" in reports[-1].losses
    assert result.target_cache_hits >= 2  # the style's targets, computed for frame 1 only


def test_a_cancel_keeps_the_frames_done(engine, make_content, make_style, params, progress_log):
    progress_log.cancel_after = 6  # the second step of frame 2
    handed: list[int] = []
    result = stylize_frames(
        engine,
        pan(make_content),
        [make_style(40, 40)],
        params(iterations=4, tolerance=0),
        should_cancel=progress_log.should_cancel,
        on_frame=lambda index, _image: handed.append(index),
    )
    assert result.cancelled
    assert handed == [0] and len(result.images) == 1 and result.steps == [4]


@pytest.mark.parametrize(
    "frames, message",
    [
        ([np.zeros((40, 48, 3), np.uint8)], "at least 2 frames, got 1"),
        ([], "at least 2 frames, got 0"),
        (
            [np.zeros((40, 48, 3), np.uint8), np.zeros((40, 50, 3), np.uint8)],
            "frame 2 is 50x40, frame 1 is 48x40: every frame must have the same size",
        ),
        ([np.zeros((40, 48, 3), np.uint8), np.zeros((40, 48), np.uint8)], "frame 2: expected"),
    ],
)
def test_bad_frames_are_refused_with_a_clear_message(engine, make_style, frames, message):
    with pytest.raises(InvalidInputError, match=message):
        stylize_frames(engine, frames, [make_style(40, 40)])


def test_a_sequence_needs_a_style(engine, make_content):
    with pytest.raises(InvalidInputError, match="at least one style"):
        stylize_frames(engine, pan(make_content), [])


def test_a_warm_start_plans_the_finest_scale_alone_with_a_finer_scales_steps():
    job = StyleParams(initial_iterations=50, iterations=20, min_size=64)
    sizes, iterations, _ = plan_scales(256, 128, job)
    assert len(sizes) > 1 and iterations[0] == 50
    assert plan_scales(256, 128, job, warm_start=True)[:2] == ([sizes[-1]], [20])


def test_the_temporal_loss_counts_only_the_trusted_pixels():
    target = torch.zeros(1, 3, 4, 4)
    weights = torch.ones(1, 1, 4, 4)
    weights[..., :2] = 0
    image = torch.zeros(1, 3, 4, 4)
    image[..., :2] = 1  # off the target where it is not trusted only
    loss = TemporalLoss(target, weights)
    assert loss(image).item() == 0
    image[..., 3] = 0.5
    assert loss(image).item() == pytest.approx(0.25 / 4)  # a mean over every pixel (1/D)


def test_the_temporal_term_joins_the_loss_terms():
    one = torch.tensor(1.0)
    terms = LossTerms(one, one, one, temporal=torch.tensor(2.0))
    assert terms.names == ("content", "style", "tv", "temporal", "total")
    assert terms.stacked().tolist() == [1, 1, 1, 2, 5]
    assert LossTerms(one, one, one).names == ("content", "style", "tv", "total")


def test_the_temporal_weight_is_checked():
    with pytest.raises(InvalidInputError, match="temporal_weight"):
        StyleParams(temporal_weight=-1)
