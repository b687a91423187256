"""StyleEngine.stylize end to end on tiny images with seeded random VGG16 weights: sizes, alpha,
colour preservation, reproducibility, cancel, style blends, progress and previews."""

from __future__ import annotations

import itertools
import math
import platform
import resource
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_style_daemon.engine import ColorMode, StyleParams
from neural_style_daemon.engine.devices import has_fast_bf16, release_free_heap
from neural_style_daemon.engine.losses import gram_matrix
from neural_style_daemon.engine.optimize import shorter_lbfgs_history
from neural_style_daemon.engine.stylize import StyleEngine, _Job, to_tensor
from neural_style_daemon.engine.vgg import fast_math
from neural_style_daemon.errors import DeviceMemoryError, InvalidInputError

# NTSC RGB -> YIQ, written out here rather than taken from the engine.
RGB_TO_YIQ = np.array(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)


def yiq(image: np.ndarray) -> np.ndarray:
    return image[..., :3].astype(np.float64) / 255 @ RGB_TO_YIQ.T


def colour_stats(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    return pixels.mean(1), torch.cov(pixels)


# --- the optimisation makes progress -------------------------------------------------------------

# Both optimisers must cut the total loss by at least 1.5x within 20 steps at 32 x 32 from the
# content (with random weights L-BFGS reaches about 2.3x there, Adam at its default learning
# rate about 1.9x, so the factor leaves a margin).
LOSS_FALL_FACTOR = 1.5
LOSS_FALL_STEPS = 20


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_total_loss_falls_by_the_stated_factor(
    engine, make_content, make_style, params, progress_log, optimizer
):
    job = params(iterations=LOSS_FALL_STEPS, optimizer=optimizer)
    result = engine.stylize(
        make_content(32, 32), [make_style(32, 32)], job, on_progress=progress_log
    )
    first, last = progress_log.totals[0], progress_log.totals[-1]
    assert len(progress_log.totals) == LOSS_FALL_STEPS
    assert all(math.isfinite(t) for t in progress_log.totals)
    assert last * LOSS_FALL_FACTOR <= first, f"{optimizer}: {first:.4g} -> {last:.4g}"
    assert result.losses["total"] == last


# --- output size and alpha -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (97, 61, None),  # odd sizes, two pyramid scales
        (97, 61, 48),  # processed smaller, resized back to the input's size
        (61, 97, 40),  # portrait, smaller processing size
        (151, 17, None),  # extreme aspect ratio (about 9:1), short side near the minimum
    ],
)
def test_output_has_exactly_the_content_size(engine, make_content, make_style, width, height, size):
    job = StyleParams(size=size, iterations=1, min_size=32)
    result = engine.stylize(make_content(width, height), [make_style(40, 40)], job)
    assert result.image.shape == (height, width, 3)
    assert result.image.dtype == np.uint8
    processed = result.sizes[-1]
    assert max(processed) == (size or max(width, height))


def test_size_that_squeezes_the_short_side_under_16_is_refused(engine, make_content, make_style):
    # 151 x 17 at a long side of 64 would be 64 x 7: too thin for VGG's poolings.
    with pytest.raises(InvalidInputError, match=r"size 64 .* at least \d+"):
        engine.stylize(make_content(151, 17), [make_style(32, 32)], StyleParams(size=64))


def test_alpha_is_returned_unchanged_bit_for_bit(engine, make_content, make_style, params):
    content = make_content(45, 33, alpha=True)
    assert len(np.unique(content[..., 3])) > 50  # a varied alpha channel, not a constant
    result = engine.stylize(content, [make_style(32, 32)], params(size=32))
    assert result.image.shape == content.shape
    np.testing.assert_array_equal(result.image[..., 3], content[..., 3])
    assert not np.array_equal(result.image[..., :3], content[..., :3])


def test_rgba_style_images_are_accepted(engine, make_content, make_style, params):
    style = np.dstack([make_style(32, 32), np.full((32, 32), 128, np.uint8)])
    result = engine.stylize(make_content(32, 32), [style], params(iterations=1))
    assert result.image.shape == (32, 32, 3)


def test_read_only_arrays_are_taken_as_they_are(engine, make_content, make_style, params):
    # As np.asarray(PIL image) or np.frombuffer give them; torch warns about such memory, and
    # warnings are errors in these tests.
    content, style = make_content(32, 32), make_style(32, 32)
    content.flags.writeable = style.flags.writeable = False
    result = engine.stylize(content, [style], params(iterations=1))
    assert result.image.shape == (32, 32, 3)


# --- colour preservation -------------------------------------------------------------------------


def test_luminance_mode_keeps_the_contents_chroma(engine, make_content, make_style, params):
    content, style = make_content(48, 40), make_style(48, 48)
    job = params(iterations=8, strength=100.0)
    kept = engine.stylize(content, [style], job.with_overrides(preserve_colors="luminance"))
    free = engine.stylize(content, [style], job)
    kept_error = np.abs(yiq(kept.image)[..., 1:] - yiq(content)[..., 1:])
    free_error = np.abs(yiq(free.image)[..., 1:] - yiq(content)[..., 1:])
    # I and Q within rounding (and out-of-gamut clipping at a few pixels) of the content's...
    assert kept_error.mean() < 0.002
    assert np.quantile(kept_error, 0.99) < 0.01
    # ...while the luminance did change, and without preservation the chroma moves a lot.
    assert np.abs(yiq(kept.image)[..., 0] - yiq(content)[..., 0]).mean() > 0.01
    assert free_error.mean() > 0.02


def test_luminance_mode_optimises_gray_images(engine, make_content, make_style):
    job = StyleParams(preserve_colors="luminance")
    content_run, styles_run = _Job(
        engine, make_content(32, 32), [make_style(32, 32)], (1.0,), job, None, None, None
    )._colour_prepared()
    for image in (content_run, *styles_run):
        assert torch.equal(image[0], image[1])
        assert torch.equal(image[0], image[2])


def test_histogram_mode_gives_each_style_the_contents_colour_statistics(
    engine, make_content, make_style, make_noise_style
):
    content = make_content(48, 40)
    styles = [make_style(40, 40), make_noise_style(36, 44)]
    job = StyleParams(preserve_colors=ColorMode.HISTOGRAM)
    content_run, styles_run = _Job(
        engine, content, styles, (1.0, 1.0), job, None, None, None
    )._colour_prepared()
    content_mean, content_cov = colour_stats(to_tensor(content, torch.device("cpu")))
    assert torch.equal(content_run, to_tensor(content, torch.device("cpu")))
    for original, matched in zip(styles, styles_run, strict=True):
        mean, cov = colour_stats(matched)
        _, original_cov = colour_stats(to_tensor(original, torch.device("cpu")))
        assert (original_cov - content_cov).abs().max() > 0.02  # far apart before
        torch.testing.assert_close(mean, content_mean, atol=0.01, rtol=0)
        torch.testing.assert_close(cov, content_cov, atol=0.004, rtol=0)


def test_histogram_mode_runs_end_to_end(engine, make_content, make_style, params):
    content = make_content(32, 32)
    result = engine.stylize(content, [make_style(32, 32)], params(preserve_colors="histogram"))
    assert result.image.shape == content.shape
    assert not result.cancelled


# --- reproducibility -----------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["content", "noise"])
def test_same_seed_gives_bit_identical_results(engine, make_content, make_style, params, init):
    content, style = make_content(32, 32), make_style(32, 32)
    job = params(seed=7, init=init)
    first = engine.stylize(content, [style], job)
    second = engine.stylize(content, [style], job)
    np.testing.assert_array_equal(first.image, second.image)
    assert first.losses == second.losses


def test_different_seed_gives_a_different_noise_start(engine, make_content, make_style, params):
    content, style = make_content(32, 32), make_style(32, 32)
    first = engine.stylize(content, [style], params(seed=7, init="noise", iterations=1))
    other = engine.stylize(content, [style], params(seed=8, init="noise", iterations=1))
    assert not np.array_equal(first.image, other.image)


# --- cancel --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cancel_after", [1, 3])
def test_cancel_stops_after_the_step_it_was_asked_at(
    engine, make_content, make_style, params, progress_log, cancel_after
):
    progress_log.cancel_after = cancel_after
    content = make_content(37, 29, alpha=True)
    result = engine.stylize(
        content,
        [make_style(32, 32)],
        params(iterations=10),
        on_progress=progress_log,
        should_cancel=progress_log.should_cancel,
    )
    assert result.cancelled
    assert result.steps == cancel_after
    assert len(progress_log.reports) == cancel_after
    assert result.image.shape == content.shape
    np.testing.assert_array_equal(result.image[..., 3], content[..., 3])


def test_cancel_during_a_later_scale_skips_the_rest(engine, make_content, make_style, progress_log):
    progress_log.cancel_after = 3  # the first step of scale 2 (scale 1 has 2)
    job = StyleParams(initial_iterations=2, iterations=2, min_size=32)
    result = engine.stylize(
        make_content(64, 48),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        should_cancel=progress_log.should_cancel,
    )
    assert len(result.sizes) == 3
    assert result.cancelled and result.steps == 3
    assert [r.scale for r in progress_log.reports] == [1, 1, 2]
    assert result.image.shape == (48, 64, 3)


def test_a_job_that_is_not_cancelled_runs_every_step(
    engine, make_content, make_style, progress_log
):
    job = StyleParams(initial_iterations=2, iterations=1, min_size=32)
    result = engine.stylize(
        make_content(64, 48),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        should_cancel=progress_log.should_cancel,
    )
    assert not result.cancelled
    assert result.steps == 2 + 1 * (len(result.sizes) - 1)
    assert progress_log.cancel_checks == result.steps


# --- out of memory --------------------------------------------------------------------------------


def out_of_memory_at_check(n: int):
    """A `should_cancel` that raises CUDA's out-of-memory error (as the allocator would) the
    n-th time it is asked, once."""
    checks = itertools.count(1)

    def check() -> bool:
        if next(checks) == n:
            raise torch.cuda.OutOfMemoryError("out of memory (raised by the test)")
        return False

    return check


def test_out_of_memory_runs_that_scale_again_with_a_short_lbfgs_history_and_not_the_ones_before(
    engine, make_content, make_style, progress_log, lbfgs_histories
):
    warnings = []
    job = StyleParams(initial_iterations=2, iterations=2, min_size=32)
    result = engine.stylize(
        make_content(64, 48),
        [make_style(32, 32)],
        job,
        on_progress=progress_log,
        should_cancel=out_of_memory_at_check(5),
        on_warning=warnings.append,
    )
    assert len(result.sizes) == 3 and not result.cancelled
    # Step 5, the first of scale 3, ran out: scale 3 ran again, scales 1 and 2 did not.
    assert [(r.scale, r.iteration) for r in progress_log.reports] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
        (3, 1),
        (3, 1),
        (3, 2),
    ]
    assert result.steps == 6
    assert lbfgs_histories == [20, 20, 20, 5]
    assert warnings == ["out of memory at 64 px: retried with a shorter L-BFGS history (5 steps)"]
    assert result.image.shape == (48, 64, 3)


@pytest.mark.parametrize("changes", [{"optimizer": "adam"}, {"lbfgs_history": 5}])
def test_out_of_memory_without_a_longer_history_to_shorten_reaches_the_caller(
    engine, make_content, make_style, params, changes
):
    warnings = []
    with pytest.raises(DeviceMemoryError) as refused:
        engine.stylize(
            make_content(37, 29),
            [make_style(32, 32)],
            params(**changes),
            should_cancel=out_of_memory_at_check(2),
            on_warning=warnings.append,
        )
    assert str(refused.value) == (
        "out of memory on cpu at 37 px: try a smaller size, or close other programs that use memory"
    )
    assert refused.value.fitting_side is None
    assert warnings == []


def test_out_of_memory_shortens_the_lbfgs_history_once_and_never_adams() -> None:
    assert shorter_lbfgs_history(StyleParams()) == 5
    assert shorter_lbfgs_history(StyleParams(lbfgs_history=6)) == 5
    assert shorter_lbfgs_history(StyleParams(lbfgs_history=5)) is None
    assert shorter_lbfgs_history(StyleParams(optimizer="adam")) is None


# --- several styles ------------------------------------------------------------------------------


def test_blended_gram_target_is_the_weighted_sum_of_each_styles_grams(
    engine, make_content, make_style, make_noise_style
):
    # Styles of the processing size, so that no resizing sits between them and the Grams.
    styles = [make_style(40, 32), make_noise_style(40, 32)]
    job = StyleParams(min_size=512)
    prepared = _Job(engine, make_content(40, 32), styles, (3.0, 1.0), job, None, None, None)
    objective = prepared._objective(prepared.content, prepared.styles, (40, 32))
    with torch.no_grad(), fast_math(engine.model):  # the engine's precision (bf16 on AMX)
        features = [
            engine.model(to_tensor(style, torch.device("cpu"))[None], job.style_layers)
            for style in styles
        ]
    for layer in job.style_layers:
        expected = 0.75 * gram_matrix(features[0][layer]) + 0.25 * gram_matrix(features[1][layer])
        torch.testing.assert_close(objective.style_losses[layer].target, expected)


@pytest.mark.parametrize("alone", [0, 1])
def test_blend_weight_one_and_zero_equals_that_style_alone(
    engine, make_content, make_style, make_noise_style, params, alone
):
    content, styles = make_content(32, 32), [make_style(32, 32), make_noise_style(32, 32)]
    blend = (1.0, 0.0) if alone == 0 else (0.0, 1.0)
    blended = engine.stylize(content, styles, params(style_blend=blend))
    single = engine.stylize(content, [styles[alone]], params())
    np.testing.assert_array_equal(blended.image, single.image)


def test_an_even_blend_differs_from_each_style_alone(
    engine, make_content, make_style, make_noise_style, params
):
    content, styles = make_content(32, 32), [make_style(32, 32), make_noise_style(32, 32)]
    even = engine.stylize(content, styles, params()).image
    for style in styles:
        assert not np.array_equal(even, engine.stylize(content, [style], params()).image)


def test_blend_weights_must_match_the_number_of_styles(engine, make_content, make_style):
    with pytest.raises(InvalidInputError, match="3 style blend weights for 2 styles"):
        engine.stylize(
            make_content(32, 32), [make_style(32, 32)] * 2, StyleParams(style_blend=(1, 1, 1))
        )


# --- progress and previews -----------------------------------------------------------------------


def test_progress_reports_scales_iterations_losses_and_work_done(
    engine, make_content, make_style, progress_log
):
    job = StyleParams(initial_iterations=3, iterations=2, min_size=32)
    result = engine.stylize(
        make_content(64, 48), [make_style(32, 32)], job, on_progress=progress_log
    )
    reports = progress_log.reports
    assert result.sizes == [(32, 24), (45, 34), (64, 48)]
    assert [(r.scale, r.iteration, r.iterations) for r in reports] == [
        (1, 1, 3),
        (1, 2, 3),
        (1, 3, 3),
        (2, 1, 2),
        (2, 2, 2),
        (3, 1, 2),
        (3, 2, 2),
    ]
    assert all(r.scales == 3 and r.size == result.sizes[r.scale - 1] for r in reports)
    for r in reports:
        assert set(r.losses) == {"content", "style", "tv", "total"}
        assert all(math.isfinite(v) and v >= 0 for v in r.losses.values())
        assert r.losses["total"] == pytest.approx(
            r.losses["content"] + r.losses["style"] + r.losses["tv"]
        )
    elapsed = [r.elapsed for r in reports]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    done = [r.work_done for r in reports]
    assert all(0 < a < b for a, b in itertools.pairwise(done))
    assert done[-1] == pytest.approx(1.0)
    assert reports[-1].eta == pytest.approx(0.0)
    assert result.steps == len(reports)


def test_work_done_weighs_steps_by_pixels(engine, make_content, make_style, progress_log):
    job = StyleParams(initial_iterations=1, iterations=1, min_size=32)
    engine.stylize(make_content(64, 48), [make_style(32, 32)], job, on_progress=progress_log)
    pixels = [w * h for w, h in (r.size for r in progress_log.reports)]
    expected = np.cumsum(pixels) / sum(pixels)
    np.testing.assert_allclose([r.work_done for r in progress_log.reports], expected)


def test_a_preview_arrives_every_n_steps_at_the_requested_size(
    engine, make_content, make_style, progress_log
):
    job = StyleParams(
        initial_iterations=3, iterations=2, min_size=32, preview_every=2, preview_size=24
    )
    engine.stylize(
        make_content(64, 48, alpha=True), [make_style(32, 32)], job, on_progress=progress_log
    )
    reports = progress_log.reports
    assert len(reports) == 7
    for step, report in enumerate(reports, start=1):
        if step % 2:
            assert report.preview is None
        else:
            assert report.preview is not None
            assert report.preview.shape == (18, 24, 3)  # 64 x 48 at a long side of 24, RGB
            assert report.preview.dtype == np.uint8


def test_no_previews_unless_asked(engine, make_content, make_style, params, progress_log):
    engine.stylize(make_content(32, 32), [make_style(32, 32)], params(), on_progress=progress_log)
    assert progress_log.reports and all(r.preview is None for r in progress_log.reports)


# --- inputs the engine refuses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (np.zeros((32, 32, 3), np.uint16), "uint8"),
        (np.zeros((32, 32), np.uint8), "H x W x 3"),
        (np.zeros((32, 32, 2), np.uint8), "H x W x 3"),
        (np.zeros((15, 40, 3), np.uint8), "at least 16"),
    ],
)
def test_unusable_content_arrays_are_refused(engine, make_style, content, message):
    with pytest.raises(InvalidInputError, match=message):
        engine.stylize(content, [make_style(32, 32)])


def test_no_style_image_is_refused(engine, make_content):
    with pytest.raises(InvalidInputError, match="at least one style image"):
        engine.stylize(make_content(32, 32), [])


def test_image_init_needs_an_init_image(engine, make_content, make_style):
    with pytest.raises(InvalidInputError, match="init image"):
        engine.stylize(make_content(32, 32), [make_style(32, 32)], StyleParams(init="image"))


def test_an_init_image_of_another_size_is_resized(engine, make_content, make_style, params):
    content = make_content(40, 32)
    result = engine.stylize(
        content,
        [make_style(32, 32)],
        params(init="image", iterations=1),
        init_image=make_content(64, 64, seed=5),
    )
    assert result.image.shape == content.shape


def test_a_scale_that_stops_improving_ends_early_and_the_best_image_is_returned(
    engine, make_content, make_style, params, progress_log
):
    content, style = make_content(40, 32), make_style(40, 40)
    job = params(iterations=60, tolerance=0.2)  # 20 % better every ten steps, or stop
    result = engine.stylize(content, [style], job, on_progress=progress_log)
    assert 10 < result.steps < 60
    # Each step reports the loss of the image it started from; the result is the best of them.
    assert result.losses["total"] == pytest.approx(min(progress_log.totals), rel=1e-6)
    assert progress_log.reports[-1].work_done == pytest.approx(1.0)


def test_tolerance_zero_runs_every_iteration(engine, make_content, make_style, params):
    content, style = make_content(40, 32), make_style(40, 40)
    result = engine.stylize(content, [style], params(iterations=25, tolerance=0.0))
    assert result.steps == 25


def test_precision_is_bf16_where_the_cpu_has_bf16_units_and_checked(warm_engine):
    fast_bf16 = has_fast_bf16(torch.device("cpu"))
    assert warm_engine.model.mixed_precision == fast_bf16
    assert warm_engine.model.channels_last == fast_bf16
    assert not StyleEngine("random", "cpu", _precision="fp32").model.mixed_precision
    with pytest.raises(ValueError, match="precision must be one of auto, fp32"):
        StyleEngine("random", "cpu", _precision="fp16")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_precision_auto_is_bf16_on_cuda_and_fp32_turns_it_off():
    assert StyleEngine("random", "cuda").model.mixed_precision
    assert not StyleEngine("random", "cuda", _precision="fp32").model.mixed_precision


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_steps_match_eager_steps(make_content, make_style, caplog):
    content, style = make_content(96, 64), make_style(64, 64)
    job = StyleParams(iterations=5, min_size=512, seed=0)  # before rounding differences grow
    graphs = StyleEngine("random", "cuda").stylize(content, [style], job)
    eager = StyleEngine("random", "cuda", _cuda_graphs=False).stylize(content, [style], job)
    assert "running it eagerly" not in caplog.text  # the graph was captured and agreed
    assert graphs.steps == eager.steps == 5
    assert graphs.losses["total"] == pytest.approx(eager.losses["total"], rel=0.05)


def test_cuda_graphs_are_off_on_the_cpu(warm_engine):
    assert not warm_engine._cuda_graphs


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_on_a_cpu_each_job_reports_its_own_peak_memory(engine, make_content, make_style, params):
    large = engine.stylize(make_content(256, 256), [make_style(256, 256)], params(iterations=2))
    release_free_heap()  # as the daemon's worker does after each job
    small = engine.stylize(make_content(32, 32), [make_style(32, 32)], params(iterations=2))
    # The process's peak resident size restarts with each job (it used to only ever grow).
    assert 0 < small.peak_memory_bytes < large.peak_memory_bytes - 20 * 2**20


def page_faults_of(make) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    make()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
def test_a_cpu_engine_makes_large_tensors_reuse_freed_memory(warm_engine):
    # 64 MiB, over glibc's largest mmap threshold: by default mapped afresh, page by page.
    values = 16 * 2**20
    faults = [page_faults_of(lambda: torch.ones(values)) for _ in range(6)]
    # The first two or three grow the heap; then each reuses what the one before freed.
    pages = values * 4 // 4096
    assert max(faults[-2:]) < pages // 10, faults


def test_warm_up_runs_a_tiny_job_and_leaves_nothing_cached(
    engine, make_content, make_style, params
):
    assert engine.warm_up() > 0
    assert len(engine.targets) == 0
    result = engine.stylize(make_content(32, 32), [make_style(32, 32)], params())
    assert result.steps == 3 and result.target_cache_hits == 0
