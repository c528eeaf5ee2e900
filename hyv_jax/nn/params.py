"""Parameter creation with logical axis names.

Every parameter carries one logical name per dimension (`embed`, `heads`, `mlp`, ...); the
rule table in `hyv_jax.parallel` maps them to mesh axes. Sharding is applied when a model is
placed on a mesh, never eagerly at creation, so modules can be built (or `nnx.eval_shape`d)
without a mesh in scope.
"""

import contextvars
import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.persistent_cache import persistent_value

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]
M = TypeVar("M", bound=nnx.Module)
_SHAPES_ONLY = contextvars.ContextVar("shapes_only", default=False)


def abstract_module(make: Callable[[nnx.Rngs], M]) -> M:
    """`make(rngs)` built abstractly (nnx.eval_shape): parameters are shapes and dtypes only.

    Parameters are traced as zeros, not initialised, and no keys are drawn from `rngs`: under a
    trace every draw updates an RNG counter whose assignment makes flax build an error message
    that walks the whole trace so far (flax/nnx/variablelib.py `set_value` asks a tracer for
    `.sharding`), quadratic in the number of parameters: the VAE's 800 took 3 s to build
    abstractly, twice per load."""
    token = _SHAPES_ONLY.set(True)
    try:
        return nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    finally:
        _SHAPES_ONLY.reset(token)


def abstract_instance(model: Callable[..., M], config) -> M:
    """`model(config, rngs=...)` built abstractly, traced once per (model, config) in a process
    (loading a model needs its abstract form for the shardings and again for the restore: the
    tiny default's start traced six, 0.2-0.4 s each on 2 cores); each call returns a copy."""
    graphdef, state = _abstract_split(model, config)
    return nnx.merge(graphdef, state, copy=True)


@functools.lru_cache(maxsize=64)
def _abstract_split(model, config):
    # kept across processes too: building a module is flax's Python work (the tiny default's
    # VAE 0.2 s), loading its pickled abstract graph and state 6 ms
    return persistent_value("abstract_model", (model, config),
                            lambda: nnx.split(abstract_module(lambda rngs: model(config, rngs=rngs))))


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
    # abstract: values are never seen, so no initialiser is traced (a normal draw is ~50 traced
    # operations: most of an abstract build's time)
    value = jnp.zeros(shape, dtype) if _SHAPES_ONLY.get() else init(rngs.params(), shape, dtype)
    return nnx.Param(value, out_sharding=tuple(axes), eager_sharding=False)


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
