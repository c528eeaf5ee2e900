"""How a DiT's weights are held while it samples: resident in the model dtype (the default), in
fp8 on the device (upstream's --use-fp8), or with the scanned blocks in host memory, streamed to
the device one block ahead (--use-cpu-offload); fp8 and offload combine, and both combine with
any mesh (each device's shards are quantised or held in its host's memory).

This is a property of loading alone: the model sees parameters, and the stacked-layer scan
(nn/stack.py) turns what it finds there (an Fp8Weight, an array in host memory) into one
block's weights at a time. The same placement rules give the abstract state the memory plan
compiles, so the plan and a real run hold the same arrays.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec, Sharding

from hyv_jax.convert.fp8_weights import BLOCK_STACKS, Group
from hyv_jax.nn.fp8 import FP8, Fp8Weight, fp8_scale, quantize_fp8
from hyv_jax.nn.stack import to_device

HOST, DEVICE = "pinned_host", "device"


@dataclasses.dataclass(frozen=True)
class MemoryMode:
    fp8: bool = False  # upstream's fp8 Linear weights (fp8_weights.fp8_groups) as float8_e4m3fn + scales
    offload: bool = False  # the double and single block stacks in host memory, streamed into the scan

    @property
    def name(self) -> str:
        return " + ".join(n for n, on in (("fp8", self.fp8), ("offload", self.offload)) if on) or "resident"

    def staging(self, shardings: Mapping) -> dict:
        """Where the weights load before `place`: in their shardings, in host memory when they
        are quantised or offloaded next (so the model never sits whole on a device in its
        dtype), else straight on the devices."""
        kind = HOST if self.fp8 or self.offload else DEVICE
        return {p: s.with_memory_kind(kind) for p, s in shardings.items()}

    def target(self, path: tuple[str, ...], sharding: Sharding) -> Sharding:
        """The sharding (with memory kind) parameter `path` runs from."""
        return sharding.with_memory_kind(HOST if self.offload and path[0] in BLOCK_STACKS else DEVICE)

    def place(self, model: nnx.Module, shardings: Mapping, groups: Sequence[Group]) -> nnx.Module:
        """The model with its weights in this mode: each fp8 group quantised (upstream's rounding,
        one scale per layer and group), every parameter moved to its target memory; the staged
        copies are freed as it goes."""
        graphdef, state = nnx.split(model)
        variables = _variables(state)
        for group in groups if self.fp8 else ():
            staged = [variables[p].get_value() for p in group]
            targets = [self.target(p, shardings[p]) for p in group]
            w8s, scale = _quantizer(tuple(targets), replicated(targets[0]))(*staged)
            for path, value, w8 in zip(group, staged, w8s, strict=True):
                variables[path].set_value(Fp8Weight(w8, scale, value.dtype))
                value.delete()
        for path, var in variables.items():
            value = var.get_value()
            if isinstance(value, Fp8Weight):
                continue
            target = self.target(path, shardings[path])
            if value.sharding != target:
                var.set_value(jax.device_put(value, target))
                value.delete()
        return nnx.merge(graphdef, state)

    def abstract_state(self, abstract: nnx.Module, shardings: Mapping, groups: Sequence[Group]) -> nnx.State:
        """The state `place` gives, as ShapeDtypeStructs with their shardings (nothing loaded)."""
        _, state = nnx.split(abstract)
        kernels = {p for g in groups for p in g} if self.fp8 else set()
        for path, var in _variables(state).items():
            value, target = var.get_value(), self.target(path, shardings[path])
            if path in kernels:
                var.set_value(Fp8Weight(jax.ShapeDtypeStruct(value.shape, FP8, sharding=target),
                                        jax.ShapeDtypeStruct(value.shape[:1], np.float32, sharding=replicated(target)), value.dtype))
            else:
                var.set_value(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=target))
        return state


def _variables(state: nnx.State) -> dict:
    return {tuple(str(k) for k in path): var for path, var in nnx.to_flat_state(state)}


def replicated(sharding: Sharding) -> Sharding:
    """A sharding for a per-layer scale vector: whole on every device of `sharding`, same memory."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(), memory_kind=sharding.memory_kind)
    return sharding


def _quantizer(targets: tuple[Sharding, ...], scale_target: Sharding):
    """weights of one group (stacked, any memory) -> (their fp8 values, the per-layer scale),
    computed on the devices and written to `targets`."""
    def quantize(*weights):
        weights = [to_device(w) for w in weights]
        scale = fp8_scale(weights, stacked=1)
        return tuple(quantize_fp8(w, scale) for w in weights), scale

    return jax.jit(quantize, out_shardings=(targets, scale_target))
