"""Sinusoidal features of a scalar (timestep or guidance) and their embedder."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.nn.mlp import MLPEmbedder


def timestep_frequencies(half: int, max_period: float) -> np.ndarray:
    """exp(-ln(max_period) * k / half) in float32: the exponent in fp32 as upstream, the exp
    correctly rounded on the host. XLA's (and torch's) fp32 exp are off by an ulp on some
    entries, which a guidance of ~6000 amplifies to ~2e-4 in the features."""
    exponent = (np.float32(-math.log(max_period)) * np.arange(half, dtype=np.float32) / np.float32(half)).astype(np.float32)
    return np.exp(exponent.astype(np.float64)).astype(np.float32)


def sinusoidal_features(t: jax.Array, dim: int = 256, max_period: float = 10000.0) -> jax.Array:
    """[cos | sin] of t * timestep_frequencies, in float32, as upstream."""
    freqs = timestep_frequencies(dim // 2, max_period)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class TimestepEmbedder(nnx.Module):
    def __init__(self, dim: int, *, freq_dim: int = 256, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.freq_dim = freq_dim
        self.mlp = MLPEmbedder(freq_dim, dim, in_axis="freq", dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, t: jax.Array) -> jax.Array:
        return self.mlp(sinusoidal_features(t, self.freq_dim))
