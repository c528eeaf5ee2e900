"""Parameter creation with logical axis names.

Every parameter carries one logical name per dimension (`embed`, `heads`, `mlp`, ...); the
rule table in `hyv_jax.parallel` maps them to mesh axes. Sharding is applied when a model is
placed on a mesh, never eagerly at creation, so modules can be built (or `nnx.eval_shape`d)
without a mesh in scope.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def make_param(
    rngs: nnx.Rngs,
    init: Initializer,
    shape: Sequence[int],
    axes: Sequence[str | None],
    dtype: jnp.dtype,
) -> nnx.Param:
    shape = tuple(int(s) for s in shape)
    if len(axes) != len(shape):
        raise ValueError(f"parameter of shape {shape} needs {len(shape)} axis names, got {axes}")
    return nnx.Param(init(rngs.params(), shape, dtype), out_sharding=tuple(axes), eager_sharding=False)


def fan_in_normal(n_in_dims: int) -> Initializer:
    """N(0, 1/fan_in) over the leading `n_in_dims` dimensions (the contracted ones)."""

    def init(key, shape, dtype):
        fan_in = 1
        for s in shape[:n_in_dims]:
            fan_in *= s
        return (jax.random.normal(key, shape, jnp.float32) / jnp.sqrt(fan_in)).astype(dtype)

    return init


def zeros(key, shape, dtype):
    del key
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype):
    del key
    return jnp.ones(shape, dtype)
