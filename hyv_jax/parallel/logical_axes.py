"""Logical parameter axes -> mesh axes.

Parameters name their dimensions (`embed`, `heads`, `mlp`, `layers`, ...); a rule table maps
each name to a mesh axis (or None: replicated). A dimension the mesh axis does not divide
stays replicated, and a mesh axis is used at most once per parameter.
"""

from collections.abc import Mapping, Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# FSDP over the model width, tensor parallelism over heads and the MLP width.
DEFAULT_RULES: tuple[tuple[str, str | None], ...] = (
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("mlp", "tensor"),
    ("layers", None),
)


def partition_spec(axes: Sequence[str | None], shape: Sequence[int], mesh: Mesh, rules: Mapping[str, str | None]) -> PartitionSpec:
    used, spec = set(), []
    for name, size in zip(axes, shape, strict=True):
        mesh_axis = rules.get(name) if name else None
        if mesh_axis is None or mesh_axis in used or mesh_axis not in mesh.shape or size % mesh.shape[mesh_axis]:
            spec.append(None)
        else:
            used.add(mesh_axis)
            spec.append(mesh_axis)
    return PartitionSpec(*spec)


def param_shardings(model: nnx.Module, mesh: Mesh, rules: Sequence[tuple[str, str | None]] = DEFAULT_RULES) -> dict[tuple[str, ...], NamedSharding]:
    """{parameter path: NamedSharding} for a real or abstract (`nnx.eval_shape`) model."""
    table = dict(rules)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("out_sharding") or (None,) * len(var.shape)
        out[tuple(str(p) for p in path)] = NamedSharding(mesh, partition_spec(axes, var.shape, mesh, table))
    return out


def make_mesh(shape: Mapping[str, int]) -> Mesh:
    """A mesh over all devices; one axis may be -1 (fill with the remaining devices)."""
    sizes = dict(shape)
    known = 1
    for size in sizes.values():
        known *= size if size != -1 else 1
    n = jax.device_count()
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1 or n % known:
        raise ValueError(f"mesh {sizes} does not fit {n} devices (at most one axis may be -1)")
    if fill:
        sizes[fill[0]] = n // known
    if known * (n // known if fill else 1) != n:
        raise ValueError(f"mesh {sizes} uses {known} of {n} devices; make the sizes multiply to {n} or use -1")
    # Auto axes: XLA propagates shardings from the parameters through the activations.
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes), axis_types=(jax.sharding.AxisType.Auto,) * len(sizes))
