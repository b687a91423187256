"""Snapshots (`StyleParams.snapshot_every`, `on_snapshot`): every N steps of the whole job, the
image as the result would be if the job ended there, at the content's size, whatever the scale
and however far apart the loss is read."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest

from neural_style_daemon.engine import StyleParams


class Snapshots:
    """Records each snapshot: its step and its image."""

    def __init__(self) -> None:
        self.images: dict[int, np.ndarray] = {}

    def __call__(self, steps: int, image: np.ndarray) -> None:
        assert steps not in self.images, "one snapshot per step"
        self.images[steps] = image.copy()


def test_a_snapshot_every_n_steps_of_the_whole_job_has_the_contents_size_and_alpha(
    engine, make_content, make_style, progress_log
):
    content = make_content(64, 48, alpha=True)
    snapshots = Snapshots()
    # Three scales of 3, 2 and 2 steps: steps 2 and 4 end at coarser scales than the content's.
    job = StyleParams(initial_iterations=3, iterations=2, min_size=32, snapshot_every=2)
    result = engine.stylize(
        content, [make_style(32, 32)], job, on_progress=progress_log, on_snapshot=snapshots
    )
    assert result.steps == 7
    assert list(snapshots.images) == [2, 4, 6]
    sizes = [report.size for report in progress_log.reports]
    assert max(sizes[1]) < max(sizes[3]) < max(sizes[5]) == 64  # at steps 2, 4 and 6
    for image in snapshots.images.values():
        assert image.shape == content.shape and image.dtype == np.uint8
        assert np.array_equal(image[..., 3], content[..., 3])
    for first, second in combinations(snapshots.images.values(), 2):
        assert not np.array_equal(first, second)  # the picture changes between snapshots


@pytest.mark.parametrize("colors", ["none", "luminance", "histogram"])
def test_snapshots_land_on_their_steps_between_spaced_reads_and_the_last_is_the_result(
    engine, make_content, make_style, progress_log, monkeypatch, colors
):
    """Reads every third step, as on CUDA: a snapshot still comes at each multiple of 5, and
    the one at the job's last step is the result, colours recombined as it is."""
    monkeypatch.setattr(engine, "_steps_between_reads", 3)
    snapshots = Snapshots()
    job = StyleParams(
        initial_iterations=7,
        iterations=4,
        min_size=32,
        snapshot_every=5,
        preserve_colors=colors,
    )
    result = engine.stylize(
        make_content(64, 48),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        on_snapshot=snapshots,
    )
    assert result.steps == 7 + 4 + 4
    assert list(snapshots.images) == [5, 10, 15]
    steps_read = [
        report.iteration + (0, 7, 11)[report.scale - 1] for report in progress_log.reports
    ]
    assert steps_read == [3, 5, 6, 7, 10, 11, 14, 15]  # every third, and the snapshots' steps
    assert np.array_equal(snapshots.images[15], result.image)


def test_a_cancel_after_a_snapshot_returns_that_snapshot(
    engine, make_content, make_style, progress_log
):
    progress_log.cancel_after = 4  # the cancel check after step 4
    snapshots = Snapshots()
    job = StyleParams(initial_iterations=3, iterations=3, min_size=32, snapshot_every=2)
    result = engine.stylize(
        make_content(64, 48, alpha=True),
        [make_style(32, 32)],
        job,
        on_snapshot=snapshots,
        should_cancel=progress_log.should_cancel,
    )
    assert result.cancelled and result.steps == 4
    assert list(snapshots.images) == [2, 4]
    assert np.array_equal(snapshots.images[4], result.image)


def test_no_snapshots_and_no_extra_reads_unless_asked(
    engine, make_content, make_style, progress_log, monkeypatch
):
    monkeypatch.setattr(engine, "_steps_between_reads", 3)
    snapshots = Snapshots()
    job = StyleParams(iterations=7, min_size=512)
    engine.stylize(
        make_content(32, 32),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        on_snapshot=snapshots,
    )
    assert snapshots.images == {}
    assert [report.iteration for report in progress_log.reports] == [3, 6, 7]


def test_live_snapshots_start_at_the_first_step_and_keep_to_their_interval(
    engine, make_content, make_style, monkeypatch
):
    import neural_style_daemon.engine.stylize as stylize_module

    # A clock that moves 0.4 s each time it is read (a few times a step): a live interval of
    # 1 s is then a snapshot every step or two, never two in one step.
    ticks = iter(range(10_000))
    monkeypatch.setattr(stylize_module.time, "perf_counter", lambda: 0.4 * next(ticks))
    snapshots = Snapshots()
    job = StyleParams(iterations=12, min_size=64, tolerance=0, live_interval=1.0)
    content = make_content(48, 40, alpha=True)
    result = engine.stylize(content, [make_style(32, 32)], job, on_snapshot=snapshots)
    steps = list(snapshots.images)
    assert steps[0] == 1  # the first step: the live view starts at once
    assert 2 <= len(steps) < 12, steps  # kept to the interval: not at every step
    assert snapshots.images[steps[-1]].shape == content.shape and result.steps == 12
    alone = Snapshots()
    engine.stylize(
        content, [make_style(32, 32)], replace(job, live_interval=None), on_snapshot=alone
    )
    assert alone.images == {}  # none asked for
