"""The optimisation loop reads the loss back from the device only every few steps on CUDA: the
steps in between wait for nothing, and reading less often changes neither the iterates nor the
returned image, only when progress, the plateau test and cancel are looked at."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import DataDependentOutputException, FakeTensorMode

from neural_style_daemon.engine import StyleParams
from neural_style_daemon.engine.optimize import (
    MAX_STEPS_BETWEEN_READS,
    Objective,
    layer_features,
    layer_grams,
    optimize_scale,
    steps_between_reads,
)
from neural_style_daemon.engine.stylize import to_tensor


@pytest.fixture
def objective(engine, make_content, make_style) -> Objective:
    params = StyleParams()
    model = engine.model
    content = to_tensor(make_content(40, 32), torch.device("cpu"))[None]
    style = to_tensor(make_style(40, 40), torch.device("cpu"))[None]
    return Objective(
        model,
        layer_features(model, content, params.content_layers),
        layer_grams(model, style, params.style_layers),
        params,
    )


@pytest.fixture
def start(make_content) -> torch.Tensor:
    return to_tensor(make_content(40, 32), torch.device("cpu"))[None]


class Reads:
    """Records each read (`after_step`), and a copy of the best image at it; `stop_at` makes
    the read at that step cancel."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.steps: list[int] = []
        self.losses: dict[int, dict[str, float]] = {}
        self.last: list[bool] = []
        self.best: dict[int, torch.Tensor] = {}
        self.stop_at = stop_at

    def __call__(self, step, image, losses, last, best) -> bool:
        self.steps.append(step)
        self.losses[step] = losses
        self.last.append(last)
        self.best[step] = best.clone()
        return step != self.stop_at


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_reading_every_fourth_step_returns_what_reading_every_step_does(
    objective, start, optimizer
):
    params = StyleParams(optimizer=optimizer)
    every_step, every_fourth = Reads(), Reads()
    image_1, losses_1 = optimize_scale(objective, start, 13, params, every_step, read_every=1)
    image_4, losses_4 = optimize_scale(objective, start, 13, params, every_fourth, read_every=4)
    assert every_step.steps == list(range(1, 14))
    assert every_fourth.steps == [4, 8, 12, 13]  # and after the last step
    assert every_fourth.last == [False, False, False, True]
    for step in every_fourth.steps:
        assert every_fourth.losses[step] == every_step.losses[step]
    assert torch.equal(image_4, image_1)
    assert losses_4 == losses_1
    assert losses_1["total"] == min(losses["total"] for losses in every_step.losses.values())


def test_a_plateau_ends_the_scale_at_the_next_read(objective, start):
    params = StyleParams()
    every_step, every_fourth = Reads(), Reads()
    _, losses_1 = optimize_scale(objective, start, 60, params, every_step, tolerance=0.2)
    _, losses_4 = optimize_scale(
        objective, start, 60, params, every_fourth, tolerance=0.2, read_every=4
    )
    stalled_at = every_step.steps[-1]
    assert 10 < stalled_at < 60, "the tolerance should end this scale early"
    assert every_fourth.steps[-1] == 4 * -(-stalled_at // 4)  # the first read at or after it
    assert every_fourth.last[-1] and not any(every_fourth.last[:-1])
    assert losses_4["total"] <= losses_1["total"]  # the extra steps can only find better


def test_a_cancel_at_a_read_ends_the_scale_there(objective, start):
    reads = Reads(stop_at=8)
    image, _ = optimize_scale(objective, start, 30, StyleParams(), reads, read_every=4)
    assert reads.steps == [4, 8]
    assert torch.equal(image, reads.best[8])  # the best image that read was shown


def test_reads_also_come_at_the_steps_asked_for_and_change_nothing_else(objective, start):
    params = StyleParams()
    every_step, spaced = Reads(), Reads()
    image_1, losses_1 = optimize_scale(objective, start, 13, params, every_step)
    image, losses = optimize_scale(
        objective, start, 13, params, spaced, read_every=4, read_at=lambda i: i % 5 == 0
    )
    assert spaced.steps == [4, 5, 8, 10, 12, 13]
    for step in spaced.steps:
        assert torch.equal(spaced.best[step], every_step.best[step])
    assert torch.equal(image, image_1) and losses == losses_1
    assert torch.equal(image, spaced.best[13])  # the best image at the last read is the result


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_no_step_reads_from_the_device_between_reads(objective, start, optimizer):
    """Under fake tensors (shapes without values) any read-back raises, so the loop gets as
    far as its first planned read only if no step before it reads anything (an .item(), a
    Python `if` on a tensor, a .tolist())."""
    evaluations = []
    objective.register_forward_hook(lambda *_: evaluations.append(1))
    with FakeTensorMode(allow_non_fake_inputs=True) as fake:
        fake_start = fake.from_tensor(start)
        with pytest.raises(DataDependentOutputException):
            optimize_scale(
                objective, fake_start, 12, StyleParams(optimizer=optimizer), Reads(), read_every=12
            )
    assert len(evaluations) == 12


def test_reads_are_spaced_by_image_size_on_cuda_and_every_step_elsewhere():
    cuda = torch.device("cuda")  # a device name only: nothing runs on it
    assert steps_between_reads(torch.device("cpu"), (512, 512)) == 1
    assert steps_between_reads(cuda, (64, 64)) == MAX_STEPS_BETWEEN_READS
    assert steps_between_reads(cuda, (256, 256)) == 8
    assert steps_between_reads(cuda, (512, 512)) == 4
    assert steps_between_reads(cuda, (1024, 1024)) == 2
    assert steps_between_reads(cuda, (2048, 2048)) == 1
    assert steps_between_reads(cuda, (4096, 4096)) == 1


def test_the_engine_reports_progress_and_previews_at_each_read(
    engine, make_content, make_style, progress_log, monkeypatch
):
    """Reads every third step, as on CUDA: steps are counted whole, previews come at the
    first read after each multiple of `preview_every`, and the work ends at 1."""
    monkeypatch.setattr(engine, "_steps_between_reads", 3)
    job = StyleParams(initial_iterations=7, iterations=4, min_size=32, preview_every=5)
    result = engine.stylize(
        make_content(64, 48),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        should_cancel=progress_log.should_cancel,
    )
    reports = progress_log.reports
    assert [(r.scale, r.iteration) for r in reports] == [
        (1, 3),
        (1, 6),
        (1, 7),
        (2, 3),
        (2, 4),
        (3, 3),
        (3, 4),
    ]
    assert result.steps == 7 + 4 + 4
    # Steps done after each report: 3, 6, 7, 10, 11, 14, 15; multiples of 5 passed at 6, 10, 15.
    assert [r.preview is not None for r in reports] == [
        False,
        True,
        False,
        True,
        False,
        False,
        True,
    ]
    assert progress_log.cancel_checks == len(reports)
    assert reports[-1].work_done == pytest.approx(1.0)
