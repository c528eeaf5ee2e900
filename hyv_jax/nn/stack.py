"""Repeated blocks as one stacked module (leading `layers` axis) run with `lax.scan`: one
compiled block body instead of one per layer."""

from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.fp8 import materialize
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


def scan_layers(layers: M, carry: C, step: Callable[..., C], xs=None, remat_policy: str = "none", start: int = 0,
                stop: int | None = None, outputs: bool = False):
    """Applies `step(layer, carry)` for each layer of a stack in order; with per-layer inputs
    `xs` (leading axis = layers), `step(layer, carry, x)`. Each layer is rematerialised in the
    backward pass per `remat_policy` (see nn/remat.py). Only layers [start, stop) run (stop
    None: to the end; negative counts from the end); the others pass the carry through, skipped
    inside the scan (slicing the stack would copy its weights). With `outputs`, `step` returns
    (carry, y) and the result is (carry, ys) with ys stacked over the layers (the layer outputs
    a later stack consumes, as long skip connections do).

    How the weights are stored is invisible to `step`: the scan slices one layer at a time and
    the layer is built from it there, so quantised parameters (nn/fp8.Fp8Weight) are dequantised
    one layer at a time, and a stack held in host memory (memory kind `pinned_host`) is streamed:
    each layer's slice is copied to the device in the iteration that runs it (on a GPU an
    asynchronous host-to-device copy), so the device never holds the whole stack. The program
    is the resident one plus that copy, hence the same results."""
    graphdef, state = nnx.split(layers)
    n = layer_count(layers)
    stop = n if stop is None else stop % n if stop < 0 else stop
    partial = start > 0 or stop < n
    if outputs and partial:
        raise ValueError("scan_layers: outputs are collected from every layer; run the whole stack")

    def body(c, scanned):
        layer_state, x, index = scanned

        def apply(c):
            layer = nnx.merge(graphdef, materialize(jax.tree.map(to_device, layer_state)))
            return step(layer, c) if xs is None else step(layer, c, x)

        if outputs:
            return apply(c)
        if not partial:
            return apply(c), None
        return jax.lax.cond((index >= start) & (index < stop), apply, lambda c: c, c), None

    carry, ys = jax.lax.scan(remat(body, remat_policy), carry, (state, xs, jnp.arange(n)))
    return (carry, ys) if outputs else carry


def in_host_memory(x) -> bool:
    """Whether an array (or a traced one) lives in host memory."""
    return jax.typeof(x).memory_space == jax.memory.Space.Host


def to_device(x):
    """x in device memory (a copy from host memory; unchanged if already there)."""
    return jax.device_put(x, jax.memory.Space.Device) if in_host_memory(x) else x


def layer_count(layers: nnx.Module) -> int:
    return jax.tree.leaves(nnx.state(layers))[0].shape[0]


def layer_at(layers: M, index: int) -> M:
    """Layer `index` of a stack, as a module of its own (on the device, dequantised)."""
    graphdef, state = nnx.split(layers)
    return nnx.merge(graphdef, materialize(jax.tree.map(lambda a: to_device(a[index]), state)))
