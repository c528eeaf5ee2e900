"""adaLN modulation: a conditioning vector becomes per-channel shifts, scales and gates."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.dense import Dense


class Modulation(nnx.Module):
    """Linear(SiLU(vec)) split into `n_chunks` vectors of the model width, each shaped
    (B, 1, D) to broadcast over tokens. Chunk order is the caller's (upstream's) order."""

    def __init__(self, dim: int, n_chunks: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.n_chunks = n_chunks
        self.linear = Dense(
            dim, (n_chunks, dim), in_axes=("embed",), out_axes=("modulation", "embed"),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )

    def __call__(self, vec: jax.Array) -> tuple[jax.Array, ...]:
        out = self.linear(jax.nn.silu(vec))
        return tuple(out[:, i, None, :] for i in range(self.n_chunks))


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    return x * (1 + scale) + shift
