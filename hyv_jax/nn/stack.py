"""Repeated blocks as one stacked module (leading `layers` axis) run with `lax.scan`: one
compiled block body instead of one per layer."""

from collections.abc import Callable
from typing import TypeVar

import jax
from flax import nnx

from hyv_jax.nn.remat import remat

M = TypeVar("M", bound=nnx.Module)
C = TypeVar("C")


def stack_layers(make: Callable[[nnx.Rngs], M], n: int, rngs: nnx.Rngs) -> M:
    """`n` independently initialised copies of `make(rngs)`, every parameter stacked on axis 0."""
    if n < 1:
        raise ValueError(f"a stack needs at least one layer, got {n}")

    @nnx.split_rngs(splits=n)
    @nnx.vmap(in_axes=(0,), out_axes=0, axis_size=n, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def create(layer_rngs):
        return make(layer_rngs)

    return create(rngs)


def scan_layers(layers: M, carry: C, step: Callable[..., C], xs=None, remat_policy: str = "none") -> C:
    """Applies `step(layer, carry)` for each layer of a stack in order; with per-layer inputs
    `xs` (leading axis = layers), `step(layer, carry, x)`. Each layer is rematerialised in the
    backward pass per `remat_policy` (see nn/remat.py)."""
    graphdef, state = nnx.split(layers)

    def body(c, scanned):
        layer_state, x = scanned
        layer = nnx.merge(graphdef, layer_state)
        return (step(layer, c) if xs is None else step(layer, c, x)), None

    return jax.lax.scan(remat(body, remat_policy), carry, (state, xs))[0]
