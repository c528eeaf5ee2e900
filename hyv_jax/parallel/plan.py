"""What a model needs to run on a mesh: the mesh, the activation rules and the context
(sequence) parallel strategy. Models take an optional plan; without one they run unsharded."""

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyv_jax.attention import attention
from hyv_jax.attention.context_parallel import context_attention
from hyv_jax.parallel.logical_axes import ACTIVATION_RULES, Rules, constrain, partition_spec
from hyv_jax.parallel.mesh import AXES, CONTEXT_STRATEGIES, mesh_from_config

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

    def place_batch(self, tree):
        """Host arrays (every process passes the same values) -> global arrays on the mesh: the
        leading axis of each array split as the activations' `batch` (where it divides), scalars
        replicated."""
        return jax.tree.map(lambda x: jax.device_put(np.asarray(x), self.batch_sharding(np.shape(x))), tree)

    def batch_sharding(self, shape: tuple[int, ...]) -> NamedSharding:
        """The sharding `place_batch` gives an array of `shape`."""
        axes = ("batch",) + (None,) * (len(shape) - 1) if shape else ()
        return NamedSharding(self.mesh, partition_spec(axes, shape, self.mesh, dict(self.activation_rules)))

    def replicate(self, tree):
        """Host arrays -> global arrays replicated on every device of the mesh."""
        return jax.tree.map(lambda x: jax.device_put(np.asarray(x), NamedSharding(self.mesh, PartitionSpec())), tree)

    def attention_fn(self, impl: str) -> Callable:
        """`attend(q, k, v, kv_lengths)` for joint self-attention under this plan."""
        if self.context_strategy == "none":
            return single_device_attention(impl)
        ring, ulysses = _CONTEXT_AXES[self.context_strategy]
        return functools.partial(context_attention, mesh=self.mesh, ring_axis=ring, ulysses_axis=ulysses, impl=impl,
                                 rules=self.activation_rules)


def set_context_degrees(parallel, ulysses: int, ring: int, heads: int) -> None:
    """The official CLI's `--ulysses-degree` x `--ring-degree` in a `parallel` config section:
    that many context devices, Ulysses over `ulysses` of them (it must divide the heads) and a
    ring over the rest (both: "usp")."""
    if ulysses < 1 or ring < 1:
        raise ValueError(f"the Ulysses and ring degrees must be >= 1, got {ulysses} and {ring}")
    if heads % ulysses:
        divisors = [d for d in range(1, heads + 1) if heads % d == 0]
        raise ValueError(f"the Ulysses degree {ulysses} must divide the model's {heads} attention heads: use one of "
                         f"{divisors} (and the ring degree for the remaining devices)")
    parallel.mesh.context = ulysses * ring
    parallel.context_strategy = "none" if ulysses * ring == 1 else "ulysses" if ring == 1 else "ring" if ulysses == 1 else "usp"
    parallel.ulysses_degree = ulysses


def plan_if_parallel(parallel: Mapping) -> "ParallelPlan | None":
    """The plan of a `parallel` config section on this job's devices, or None for one device:
    a mesh of size 1 everywhere, or a single device (models then run unsharded on it)."""
    sizes = parallel["mesh"].values()
    if all(size == 1 for size in sizes) or (jax.device_count() == 1 and all(size in (1, -1) for size in sizes)):
        return None
    return ParallelPlan.from_config(parallel)


def single_device_attention(impl: str) -> Callable:
    """`attend(q, k, v, kv_lengths)` with no context parallelism."""
    return functools.partial(_attend, impl=impl)


def _attend(q, k, v, kv_lengths, *, impl):
    return attention(q, k, v, kv_lengths=kv_lengths, impl=impl)


def local_mesh() -> Mesh:
    """This process's devices as one `fsdp` axis (data, context, tensor of size 1): for models
    every process runs by itself, such as the text encoders, sharded to fit."""
    devices = np.array(jax.local_devices()).reshape(1, -1, 1, 1)
    return Mesh(devices, AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(AXES))
