"""Initialising a model straight into sharded parameters: each device computes only its own
shards (jit with out_shardings), so the full model never exists on one device."""

from collections.abc import Callable

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyv_jax.parallel.logical_axes import PARAM_RULES, Rules, param_shardings


def state_shardings(abstract: nnx.Module, mesh: Mesh, rules: Rules = PARAM_RULES) -> nnx.State:
    """The model's state with a NamedSharding in place of every value: parameters by their
    logical axes and the rules, anything else (e.g. RNG counters) replicated."""
    by_path = param_shardings(abstract, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    flat = nnx.to_flat_state(nnx.state(abstract))
    return nnx.from_flat_state(
        [(path, var.replace(by_path.get(tuple(str(p) for p in path), replicated))) for path, var in flat]
    )


def init_sharded(make: Callable[[], nnx.Module], mesh: Mesh, rules: Rules = PARAM_RULES) -> nnx.Module:
    """`make()` (which builds the model with its own nnx.Rngs) with every parameter created
    directly in its sharding on `mesh`."""
    abstract = nnx.eval_shape(make)
    graphdef = nnx.graphdef(abstract)

    @jax.jit(out_shardings=state_shardings(abstract, mesh, rules))
    def create():
        return nnx.state(make())

    return nnx.merge(graphdef, create())
