"""GroupNorm over the channels of a channels-last tensor, statistics in float32."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import make_param, ones, zeros


class GroupNorm(nnx.Module):
    """Normalises each of `groups` channel groups over all positions (every axis but batch)."""

    def __init__(self, channels: int, groups: int, *, eps: float = 1e-6, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups")
        self.groups = groups
        self.eps = eps
        self.weight = make_param(rngs, ones, (channels,), ("channels",), param_dtype)
        self.bias = make_param(rngs, zeros, (channels,), ("channels",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        g = x.astype(jnp.float32).reshape(x.shape[0], -1, self.groups, c // self.groups)
        mean = jnp.mean(g, axis=(1, 3), keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axis=(1, 3), keepdims=True)
        y = ((g - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        y = y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)
