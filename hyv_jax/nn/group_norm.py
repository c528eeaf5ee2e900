"""GroupNorm over the channels of a channels-last tensor, statistics in float32."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.backend_form import per_backend
from hyv_jax.nn.params import make_param, ones, zeros

# XLA:CPU sums a (rows, C) array over its rows one narrow column at a time when C is small (the
# VAE's 32-128 channels): viewed as (rows / k, k * C) rows of ~512 values the same sums run
# vectorised, 2-3x faster (a GroupNorm + SiLU at 17x96x64x32: 13.6 ms -> 5.4 ms, torch 5.0 ms)
_CPU_ROW_WIDTH = 512


def _channel_sums_cpu(x: jax.Array) -> jax.Array:
    """(B, N, C) -> (B, C): sums over N, in blocks of k rows summed side by side first."""
    b, n, c = x.shape
    k = max(1, _CPU_ROW_WIDTH // c)
    while n % k:
        k //= 2
    return x.reshape(b, n // k, k * c).sum(1).reshape(b, k, c).sum(1)


def _channel_sums(x: jax.Array) -> jax.Array:
    return per_backend(x, cpu=_channel_sums_cpu, default=lambda x: x.sum(1))


class GroupNorm(nnx.Module):
    """Normalises each of `groups` channel groups over all positions (every axis but batch)."""

    def __init__(self, channels: int, groups: int, *, eps: float = 1e-6, param_dtype=jnp.float32, rngs: nnx.Rngs):
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels do not split into {groups} groups")
        self.groups = groups
        self.eps = eps
        self.weight = make_param(rngs, ones, (channels,), ("channels",), param_dtype)
        self.bias = make_param(rngs, zeros, (channels,), ("channels",), param_dtype)

    def _group_means(self, x: jax.Array) -> jax.Array:
        """(B, N, C) -> (B, 1, C): every channel's group mean over N."""
        b, n, c = x.shape
        sums = _channel_sums(x).reshape(b, self.groups, c // self.groups).sum(-1, keepdims=True)
        return jnp.broadcast_to(sums / (n * (c // self.groups)), (b, self.groups, c // self.groups)).reshape(b, 1, c)

    def __call__(self, x: jax.Array) -> jax.Array:
        flat = x.astype(jnp.float32).reshape(x.shape[0], -1, x.shape[-1])
        centred = flat - self._group_means(flat)
        y = (centred * jax.lax.rsqrt(self._group_means(jnp.square(centred)) + self.eps)).reshape(x.shape)
        y = y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)
