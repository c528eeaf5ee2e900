"""What a model needs to run on a mesh: the mesh, the activation rules and the context
(sequence) parallel strategy. Models take an optional plan; without one they run unsharded."""

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
from jax.sharding import Mesh

from hyv_jax.attention import attention
from hyv_jax.attention.context_parallel import context_attention
from hyv_jax.parallel.logical_axes import ACTIVATION_RULES, Rules, constrain
from hyv_jax.parallel.mesh import CONTEXT_STRATEGIES, mesh_from_config

# strategy -> (ring axis, Ulysses axis); see parallel/mesh.py for the usp axes.
_CONTEXT_AXES = {"ulysses": (None, "context"), "ring": ("context", None), "usp": ("context_ring", "context")}


@dataclasses.dataclass(frozen=True)
class ParallelPlan:
    mesh: Mesh
    context_strategy: str = "none"
    activation_rules: Rules = ACTIVATION_RULES

    def __post_init__(self):
        if self.context_strategy not in CONTEXT_STRATEGIES:
            raise ValueError(f"unknown context_strategy {self.context_strategy!r}; choose one of {CONTEXT_STRATEGIES}")
        if self.context_strategy == "usp" and "context_ring" not in self.mesh.shape:
            raise ValueError("context_strategy 'usp' needs a mesh from mesh_from_config with ulysses_degree (axes context_ring x context)")

    @classmethod
    def from_config(cls, parallel: Mapping) -> "ParallelPlan":
        return cls(mesh_from_config(parallel), parallel.get("context_strategy", "none"))

    def constrain(self, x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
        return constrain(x, axes, self.mesh, self.activation_rules)

    def attention_fn(self, impl: str) -> Callable:
        """`attend(q, k, v, kv_lengths)` for joint self-attention under this plan."""
        if self.context_strategy == "none":
            return single_device_attention(impl)
        ring, ulysses = _CONTEXT_AXES[self.context_strategy]
        return functools.partial(context_attention, mesh=self.mesh, ring_axis=ring, ulysses_axis=ulysses, impl=impl,
                                 rules=self.activation_rules)


def single_device_attention(impl: str) -> Callable:
    """`attend(q, k, v, kv_lengths)` with no context parallelism."""
    return functools.partial(_attend, impl=impl)


def _attend(q, k, v, kv_lengths, *, impl):
    return attention(q, k, v, kv_lengths=kv_lengths, impl=impl)
