"""The First Block Cache step traces at the released 13B config and 544x960x129 in bfloat16
(abstractly: nothing is allocated): both branches of its `lax.cond` agree on types, and the
cache holds (B, 67,320, 3072) image tokens. Parity with diffusers is in test_t2v_pipeline_parity."""

import jax
import jax.numpy as jnp
from flax import nnx

from configs import load_config
from hyv_jax.convert.transformer_checkpoint import abstract_transformer
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.sampling.first_block_cache import cached_velocity, empty_cache


def test_traces_at_the_released_config():
    config = TransformerConfig.from_mapping(load_config("configs/hunyuan_video_t2v.py").transformer)
    assert config.dtype == "bfloat16"
    graphdef, state = nnx.split(abstract_transformer(config))
    latents = jax.ShapeDtypeStruct((1, 33, 68, 120, 16), jnp.float32)

    def step(state, cache, x):
        return cached_velocity(nnx.merge(graphdef, state), cache, jnp.float32(0.1), x, jnp.ones((1,)), jnp.ones((1, 256, 4096)),
                               jnp.ones((1, 256), jnp.int32), jnp.ones((1, 768)), jnp.full((1,), 6000.0))

    cache = jax.eval_shape(lambda: empty_cache(config, latents.shape))
    velocity, next_cache, computed, change = jax.eval_shape(step, state, cache, latents)
    assert velocity.shape == latents.shape
    assert next_cache.head.shape == next_cache.tail.shape == (1, 33 * 34 * 60, 3072)
    assert next_cache.head.dtype == jnp.bfloat16 and computed.dtype == jnp.bool_ and change.dtype == jnp.float32
