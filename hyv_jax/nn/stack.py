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
    one layer at a time. A stack held in host memory (memory kind `pinned_host`) is streamed one
    layer ahead: the carry holds the layer in use on the device, and each iteration starts the
    host-to-device copy of the next layer, which depends on nothing the layer computes, so the
    copy overlaps the computation (on a GPU an asynchronous transfer) and the device holds about
    two layers of the stack. The arithmetic is the resident program's, hence the same results."""
    graphdef, state = nnx.split(layers)
    n = layer_count(layers)
    stop = n if stop is None else stop % n if stop < 0 else stop
    partial = start > 0 or stop < n
    if outputs and partial:
        raise ValueError("scan_layers: outputs are collected from every layer; run the whole stack")
    streamed = any(in_host_memory(a) for a in jax.tree.leaves(state))

    def fetch(index):  # one layer's weights in device memory
        return jax.tree.map(lambda a: to_device(jax.lax.dynamic_index_in_dim(a, index, keepdims=False)), state)

    def body(c, scanned):
        layer_state, x, index = scanned
        if streamed:
            c, layer_state = c  # the layer copied during the previous iteration

        def apply(c):
            layer = nnx.merge(graphdef, materialize(jax.tree.map(to_device, layer_state)))
            out = step(layer, c) if xs is None else step(layer, c, x)
            if not streamed:
                return out
            following = fetch(jnp.minimum(index + 1, stop - 1))
            return ((out[0], following), out[1]) if outputs else (out, following)

        if outputs:
            return apply(c)
        if not partial:
            return apply(c), None
        skip = (lambda c: (c, layer_state)) if streamed else (lambda c: c)
        return jax.lax.cond((index >= start) & (index < stop), apply, skip, c), None

    first = (carry, fetch(start)) if streamed else carry
    carry, ys = jax.lax.scan(remat(body, remat_policy), first, (None if streamed else state, xs, jnp.arange(n)))
    carry = carry[0] if streamed else carry
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
