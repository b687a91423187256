"""Loss targets reused across jobs: the same result, less work, a bounded memory."""

from __future__ import annotations

import numpy as np
import torch

from neural_style_daemon.engine.cache import TargetCache, image_digest
from neural_style_daemon.engine.stylize import StyleEngine


def test_a_repeated_job_reuses_its_targets_and_gives_the_same_image(
    one_thread, make_content, make_style, params
):
    content, style = make_content(48, 40), make_style(40, 40)
    job = params(min_size=32, iterations=3)
    fresh = StyleEngine("random", "cpu")  # same seeded weights, empty cache
    first = fresh.stylize(content, [style], job)
    second = fresh.stylize(content, [style], job)
    scales = len(first.sizes)
    assert first.target_cache_hits == 0
    assert second.target_cache_hits == 2 * scales  # content features and style Grams, per scale
    assert np.array_equal(first.image, second.image)


def test_a_different_style_or_colour_mode_is_not_a_hit(make_content, make_style, params):
    content = make_content(40, 40)
    engine = StyleEngine("random", "cpu")
    engine.stylize(content, [make_style(40, 40)], params(iterations=1))
    other_style = engine.stylize(content, [make_style(40, 40, seed=7)], params(iterations=1))
    assert other_style.target_cache_hits == 1  # the content features only
    luminance = engine.stylize(
        content, [make_style(40, 40)], params(iterations=1, preserve_colors="luminance")
    )
    assert luminance.target_cache_hits == 0  # the luminance run has its own content and style


def test_the_cache_evicts_least_recently_used_entries_to_stay_under_its_bound():
    cache = TargetCache(max_bytes=3 * 400)
    tensor = lambda: {"relu1_1": torch.zeros(100)}  # noqa: E731  400 bytes each
    for key in "abc":
        cache.get_or_compute(key, tensor)
    cache.get_or_compute("a", tensor)  # "a" is now the most recently used
    cache.get_or_compute("d", tensor)  # evicts "b"
    assert cache.bytes <= cache.max_bytes and len(cache) == 3
    hits = cache.hits
    cache.get_or_compute("a", tensor)
    cache.get_or_compute("b", tensor)
    assert cache.hits == hits + 1  # "a" was kept, "b" was not


def test_an_entry_larger_than_the_bound_is_computed_but_not_kept():
    cache = TargetCache(max_bytes=100)
    cache.get_or_compute("big", lambda: {"relu5_1": torch.zeros(1000)})
    assert len(cache) == 0 and cache.bytes == 0


def test_image_digest_ignores_alpha_but_not_pixels_or_shape():
    rgb = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((8, 6), 7, np.uint8)])
    assert image_digest(rgb) == image_digest(rgba)
    changed = rgb.copy()
    changed[0, 0, 0] ^= 1
    assert image_digest(changed) != image_digest(rgb)
    assert image_digest(rgb.reshape(6, 8, 3)) != image_digest(rgb)
