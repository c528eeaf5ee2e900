"""HunyuanCustom's step cache as a velocity policy: the joint tokens entering the last single
block, kept by a full step and reused by a cached one (only vec, that block and the final layer
run), on the tiny custom model with random non-zero weights, float32; and the denoising loop
using the cache exactly on upstream's steps 11, 12, 14, 15, 17, 18, 20, 21 of 30, in one
compiled step."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import tiny_custom
from helpers import report
from hyv_jax.loading.models import load_transformer
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.sampling.denoise import CompiledStep, FullModel, StepConditions, denoise
from hyv_jax.sampling.schedule import FlowSchedule
from hyv_jax.sampling.step_cache import CACHED_STEPS, StepCache, cached_steps


@pytest.fixture(scope="module")
def model():
    return load_transformer(CustomTransformerConfig.from_mapping(tiny_custom.get_config().transformer), seed=1)


def _inputs(batch=1):
    rng = np.random.default_rng(0)
    f32 = np.float32
    mask = np.ones((batch, 12), np.int32)
    mask[:, 9:] = 0
    x = rng.standard_normal((batch, 2, 4, 6, 4)).astype(f32)
    conditions = StepConditions(rng.standard_normal((batch, 12, 32)).astype(f32), mask, rng.standard_normal((batch, 16)).astype(f32),
                                None, np.float32(1.0), dict(ref_latents=rng.standard_normal((batch, 1, 4, 6, 4)).astype(f32)))
    return x, conditions


def test_cached_velocity_reproduces_the_full_one(model):
    x, conditions = _inputs()
    t = np.array([700.0], np.float32)
    carry = StepCache.init_carry(model, x.shape, conditions, steps=2, reuse=frozenset({1}))
    assert carry.joint.shape == (1, 6 * 2 + 6 + 12, 64)  # reference + video + text tokens

    @jax.jit
    def run(m, carry):
        plain = conditions.forward(m, x, t, None)
        full, carry = StepCache().velocity(m, x, t, conditions, None, carry)
        # the cached step ignores x: only vec (from t and the text) and the last block run
        cached, carry = StepCache().velocity(m, np.zeros_like(x), t, conditions, None, carry)
        return plain, full, cached, carry

    plain, full, cached, carry = run(model, carry)
    _, rel = report("step cache: full step vs plain forward", np.asarray(full), np.asarray(plain))
    assert rel < 1e-6
    _, rel = report("step cache: cached step vs full (same t)", np.asarray(cached), np.asarray(full))
    assert rel < 1e-6
    assert int(carry.cached_calls) == 1 and int(carry.step) == 2


def test_denoising_uses_the_cache_on_upstreams_steps(model):
    x, conditions = _inputs()
    conditions = jax.tree.map(lambda a: np.concatenate([a, a]) if np.ndim(a) else a, conditions)  # [negative, positive]
    conditions = conditions._replace(cfg_scale=np.float32(7.5))
    schedule = FlowSchedule.create(30, 13.0)
    graphdef, state = nnx.split(model)
    assert cached_steps(30) == CACHED_STEPS and not cached_steps(29) and not cached_steps(30, enabled=False)
    step = CompiledStep(graphdef, StepCache())
    carry = StepCache.init_carry(model, (2, *x.shape[1:]), conditions, 30, CACHED_STEPS)
    with_cache, final = denoise(step, state, x, schedule, conditions, carry, progress=False)
    assert int(final.cached_calls) == 8 and StepCache.full_steps(final, 30) == 22 and step.traces == 1
    without, _ = denoise(CompiledStep(graphdef, FullModel()), state, x, schedule, conditions, progress=False)
    difference = np.abs(np.asarray(with_cache) - np.asarray(without)).max()
    assert np.isfinite(np.asarray(with_cache)).all() and 0 < difference  # the cache approximates, it is not a no-op
    again, _ = denoise(step, state, x, schedule, conditions, carry, progress=False)  # a later run reuses the program
    assert step.traces == 1
    np.testing.assert_array_equal(np.asarray(again), np.asarray(with_cache))
