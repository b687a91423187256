"""A job's estimated time before its first step (engine/estimate.py): from the speed of the
largest scale measured and the share of its plan the last job did; reported at iteration 0."""

from __future__ import annotations

import pytest

from neural_style_daemon.engine.estimate import MIN_STEPS_TO_MEASURE, JobTimer
from neural_style_daemon.engine.stylize import StyleEngine


def test_the_estimate_is_the_planned_work_at_the_largest_scales_speed_and_the_share_done():
    timer = JobTimer()
    assert timer.estimate(1e6) is None
    timer.record_scale(pixels=10_000, steps=10, seconds=1.0)  # 1e-5 s per pixel
    assert timer.estimate(1e6) == pytest.approx(10.0)
    # A much smaller scale is bound by fixed costs per step: it does not replace the figure.
    timer.record_scale(pixels=1_000, steps=10, seconds=1.0)
    assert timer.estimate(1e6) == pytest.approx(10.0)
    timer.record_scale(pixels=40_000, steps=MIN_STEPS_TO_MEASURE - 1, seconds=100.0)
    assert timer.estimate(1e6) == pytest.approx(10.0)  # too few steps to go by
    timer.record_scale(pixels=40_000, steps=10, seconds=2.0)
    assert timer.estimate(1e6) == pytest.approx(5.0)
    # The last job ended its scales early, at 40 % of its plan: so will the next, likely.
    timer.record_job(work_done=4e5, work_planned=1e6)
    assert timer.estimate(1e6) == pytest.approx(2.0)


def test_a_job_reports_its_estimate_before_its_first_step(
    make_content, make_style, params, progress_log, one_thread
):
    engine = StyleEngine("random", device="cpu")  # no earlier job: nothing to estimate from
    content, style = make_content(64, 48), make_style(48, 48)
    job = params(iterations=4, tolerance=0)
    engine.stylize(content, [style], job, on_progress=progress_log)
    (first,) = progress_log.before_start
    assert (first.iteration, first.work_done, first.eta) == (0, 0.0, None)
    assert progress_log.reports[0].iteration == 1

    # The next job's estimate: its steps' pixels at the speed the first job measured.
    expected = engine.timer.estimate(64 * 48 * 8)
    assert expected is not None and expected > 0
    again = type(progress_log)()
    engine.stylize(content, [style], params(iterations=8, tolerance=0), on_progress=again)
    (estimate,) = again.before_start
    assert estimate.eta == pytest.approx(expected)
