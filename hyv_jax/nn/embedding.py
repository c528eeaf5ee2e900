"""A lookup table of vectors (token or position embeddings)."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import make_param


def _normal(key, shape, dtype):
    # upstream initialisers draw embeddings with a small std; only shape and non-zero matter here
    return (0.02 * jax.random.normal(key, shape, jnp.float32)).astype(dtype)


class Embedding(nnx.Module):
    """`weight[ids]`: (num, dim) table on the logical axes (`axis_name`, "embed")."""

    def __init__(self, num: int, dim: int, *, axis_name: str = "vocab", dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.dtype = dtype
        self.weight = make_param(rngs, _normal, (num, dim), (axis_name, "embed"), param_dtype)

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.weight[...], ids, axis=0).astype(self.dtype)
