"""HunyuanCustom's step cache: the joint tokens entering the last single block, returned by a
full forward and consumed by a cached one (only vec, that block and the final layer run), on
the tiny custom model with random non-zero weights, float32; and the denoising loop using the
cache exactly on upstream's steps 11, 12, 14, 15, 17, 18, 20, 21 of 30."""

import jax
import numpy as np
import pytest

from configs import tiny_custom
from helpers import report
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.text.text_encoder import PromptEmbeddings
from hyv_jax.sampling.custom_pipeline import CACHED_STEPS, CustomDenoiseStep, random_custom_transformer
from hyv_jax.sampling.denoise import denoise
from hyv_jax.sampling.schedule import FlowSchedule


@pytest.fixture(scope="module")
def model():
    return random_custom_transformer(CustomTransformerConfig.from_mapping(tiny_custom.get_config().transformer), seed=1)


def _inputs(batch=1):
    rng = np.random.default_rng(0)
    f32 = np.float32
    mask = np.ones((batch, 12), np.int32)
    mask[:, 9:] = 0
    return dict(x=rng.standard_normal((batch, 2, 4, 6, 4)).astype(f32), ref=rng.standard_normal((batch, 1, 4, 6, 4)).astype(f32),
                text=rng.standard_normal((batch, 12, 32)).astype(f32), mask=mask, pooled=rng.standard_normal((batch, 16)).astype(f32))


def test_cached_forward_reproduces_the_full_one(model):
    i = _inputs()
    t = np.array([700.0], np.float32)

    @jax.jit
    def run(m, t):
        plain = m(i["x"], t, i["ref"], i["text"], i["mask"], i["pooled"])
        full, cache = m(i["x"], t, i["ref"], i["text"], i["mask"], i["pooled"], return_step_cache=True)
        # the cached call ignores x: only vec (from t and the text) and the last block run
        cached = m(np.zeros_like(i["x"]), t, i["ref"], i["text"], i["mask"], i["pooled"], step_cache=cache)
        return plain, full, cache, cached

    plain, full, cache, cached = run(model, t)
    assert cache.shape == (1, 6 * 2 + 6 + 12, 64)  # reference + video + text tokens
    _, rel = report("step cache: full forward with cache vs plain", np.asarray(full), np.asarray(plain))
    assert rel < 1e-6
    _, rel = report("step cache: cached forward vs full (same t)", np.asarray(cached), np.asarray(full))
    assert rel < 1e-6


def test_denoising_uses_the_cache_on_upstreams_steps(model):
    i = _inputs()
    text = PromptEmbeddings(np.concatenate([i["text"]] * 2), np.concatenate([i["mask"]] * 2), np.concatenate([i["pooled"]] * 2))
    conditions = dict(ref=i["ref"], bg=None, audio=None, strength=np.float32(1.0))
    schedule = FlowSchedule.create(30, 13.0)
    step = CustomDenoiseStep(model)
    step.begin(conditions, CACHED_STEPS)
    with_cache = denoise(step, i["x"], schedule, text, None, 7.5, progress=False)
    assert step.cached_calls == 8 and step.calls == 30 and step.traces == 2
    step.begin(conditions)
    without = denoise(step, i["x"], schedule, text, None, 7.5, progress=False)
    assert step.cached_calls == 0 and step.calls == 30 and step.traces == 3  # the uncached variant
    difference = np.abs(np.asarray(with_cache) - np.asarray(without)).max()
    assert np.isfinite(np.asarray(with_cache)).all() and 0 < difference  # the cache approximates, it is not a no-op
    step.begin(conditions, CACHED_STEPS)  # a later run reuses the compiled variants
    again = denoise(step, i["x"], schedule, text, None, 7.5, progress=False)
    assert step.traces == 3 and step.cached_calls == 8
    np.testing.assert_array_equal(np.asarray(again), np.asarray(with_cache))
