"""The denoising step at the released 13B config and 544x960x129 in bfloat16, traced abstractly
(nothing is allocated): with every velocity policy on one device, and the plain step on the
meshes sampling uses (context 8 Ulysses, fsdp 4 x context 2 ring) over 8 simulated devices.
The First Block Cache's `lax.cond` branches agree on types and its cache holds (B, 67,320, 3072)
image tokens. Parity with diffusers is in test_t2v_pipeline_parity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import load_config
from hyv_jax.convert.transformer_checkpoint import abstract_transformer
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.sharded_init import state_shardings
from hyv_jax.sampling.denoise import FullModel, StepConditions, denoise_step
from hyv_jax.sampling.first_block_cache import FirstBlockCache

CONFIG = TransformerConfig.from_mapping(load_config("configs/hunyuan_video_t2v.py").transformer)
LATENTS = jax.ShapeDtypeStruct((1, 33, 68, 120, 16), jnp.float32)
CONDITIONS = StepConditions(jax.ShapeDtypeStruct((1, 256, 4096), jnp.float32), jax.ShapeDtypeStruct((1, 256), jnp.int32),
                            jax.ShapeDtypeStruct((1, 768), jnp.float32), jax.ShapeDtypeStruct((1,), jnp.float32),
                            jax.ShapeDtypeStruct((), jnp.float32), {})
SCALAR = jax.ShapeDtypeStruct((), jnp.float32)


def trace_step(policy, carry, plan=None):
    model = abstract_transformer(CONFIG)
    graphdef, state = nnx.split(model)
    if plan is not None:  # the parameters as sampling restores them: sharded by their logical axes
        state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state,
                             state_shardings(model, plan.mesh))

    def step(state, latents, t, conditions, carry):
        return denoise_step(nnx.merge(graphdef, state), policy, plan, latents, t, t, t, conditions, carry)

    return jax.eval_shape(step, state, LATENTS, SCALAR, CONDITIONS, carry)


def test_the_plain_and_the_first_block_cache_steps_trace_at_the_released_config():
    assert CONFIG.dtype == "bfloat16"
    latents, _ = trace_step(FullModel(), ())
    assert latents.shape == LATENTS.shape and latents.dtype == jnp.float32
    carry = FirstBlockCache.init_carry(abstract_transformer(CONFIG), LATENTS.shape, CONDITIONS, 0.1)
    carry = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), carry)
    latents, cache = trace_step(FirstBlockCache(), carry)
    assert cache.head.shape == cache.tail.shape == (1, 33 * 34 * 60, 3072)
    assert cache.head.dtype == jnp.bfloat16 and cache.full_steps.dtype == jnp.int32


@pytest.mark.parametrize("parallel", [
    {"mesh": {"data": 1, "fsdp": 1, "context": 8, "tensor": 1}, "context_strategy": "ulysses"},
    {"mesh": {"data": 1, "fsdp": 4, "context": 2, "tensor": 1}, "context_strategy": "ring"},
], ids=["context8-ulysses", "fsdp4-context2-ring"])
def test_the_step_traces_on_the_sampling_meshes(parallel):
    latents, _ = trace_step(FullModel(), (), ParallelPlan.from_config(parallel))
    assert latents.shape == LATENTS.shape
