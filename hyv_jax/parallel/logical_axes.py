"""Logical axes -> mesh axes, for parameters and for activations.

Parameters name their dimensions (`embed`, `heads`, `mlp`, `layers`, ...) and activations are
constrained with names too (`batch`, `sequence`, ...); a rule table maps each name to one mesh
axis, a tuple of mesh axes, or None (replicated). Mesh axes the mesh lacks, axes already used
by another dimension and axes that do not divide the dimension are dropped, so one rule table
serves every mesh shape.
"""

from collections.abc import Mapping, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# FSDP over the model width, tensor parallelism over heads and the MLP width, and over the
# adaLN chunks (shift/scale/gate) where their count divides: the modulation kernels
# (embed -> chunks x embed) are the largest weights without a heads or mlp axis.
PARAM_RULES: Rules = (
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("modulation", "tensor"),
    ("layers", None),
)

# Activations: the batch over data and fsdp (fsdp gathers weights, not activations), the token
# sequence over the context axes (ring outer, Ulysses inner; see parallel/mesh.py), heads over
# tensor; the model width stays whole.
ACTIVATION_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("sequence", ("context_ring", "context")),
    ("heads", "tensor"),
    ("embed", None),
)


def partition_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Mapping) -> PartitionSpec:
    used, spec = set(), []
    for name, size in zip(axes, shape, strict=True):
        target = rules.get(name) if name else None
        chosen, ways = [], 1
        for mesh_axis in (target,) if isinstance(target, str) else (target or ()):
            n = mesh.shape.get(mesh_axis)
            if n is None or mesh_axis in used or size % (ways * n):
                continue
            chosen.append(mesh_axis)
            ways *= n
        used.update(chosen)
        spec.append(None if not chosen else chosen[0] if len(chosen) == 1 else tuple(chosen))
    return PartitionSpec(*spec)


def param_shardings(model: nnx.Module, mesh: Mesh, rules: Rules = PARAM_RULES) -> dict[tuple[str, ...], NamedSharding]:
    """{parameter path: NamedSharding} for a real or abstract (`nnx.eval_shape`) model."""
    table = dict(rules)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
        out[tuple(str(p) for p in path)] = NamedSharding(mesh, partition_spec(axes, var.shape, mesh, table))
    return out


def constrain(x: jax.Array, axes: Sequence[str | None], mesh: Mesh, rules: Rules = ACTIVATION_RULES) -> jax.Array:
    """Pins an activation's layout by logical axis names (one per dimension) inside jit."""
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, partition_spec(axes, x.shape, mesh, dict(rules))))
