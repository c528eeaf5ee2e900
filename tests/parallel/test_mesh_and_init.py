"""Meshes from the `parallel` config section, and sharded initialisation of the model."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.parallel.mesh import mesh_from_config
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.sharded_init import init_sharded, state_shardings

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)


def test_mesh_from_config_fills_and_splits_context():
    parallel = load_config("configs/tiny.py", ["parallel.mesh.data=2", "parallel.mesh.context=2"]).parallel
    assert dict(mesh_from_config(parallel).shape) == {"data": 2, "fsdp": 2, "context": 2, "tensor": 1}
    usp = {"mesh": {"context": -1}, "context_strategy": "usp", "ulysses_degree": 4}
    assert dict(mesh_from_config(usp).shape) == {"data": 1, "fsdp": 1, "context_ring": 2, "context": 4, "tensor": 1}


@pytest.mark.parametrize("parallel, message", [
    ({"mesh": {"data": 3, "fsdp": -1}}, "does not fit 8 devices"),
    ({"mesh": {"data": 2, "fsdp": 2}}, "uses 4 of 8 devices"),
    ({"mesh": {"pipeline": 8}}, "unknown mesh axes"),
    ({"mesh": {"context": 8}, "context_strategy": "striped"}, "unknown context_strategy"),
    ({"mesh": {"context": 8}, "context_strategy": "usp", "ulysses_degree": 3}, "must divide the context axis"),
])
def test_bad_parallel_config_says_what_to_fix(parallel, message):
    with pytest.raises(ValueError, match=message):
        mesh_from_config(parallel)


def test_usp_plan_needs_the_split_context_axis():
    with pytest.raises(ValueError, match="ulysses_degree"):
        ParallelPlan(mesh_from_config({"mesh": {"context": 8}}), "usp")


def test_init_sharded_places_every_parameter_and_matches_plain_init():
    mesh = mesh_from_config({"mesh": {"fsdp": 4, "tensor": 2}})
    make = lambda: HunyuanVideoTransformer(TINY, rngs=nnx.Rngs(0))  # noqa: E731
    sharded = init_sharded(make, mesh)
    expected = state_shardings(nnx.eval_shape(make), mesh)
    plain = make()
    flat = zip(nnx.to_flat_state(nnx.state(sharded)), nnx.to_flat_state(expected), nnx.to_flat_state(nnx.state(plain)), strict=True)
    for (path, var), (_, sharding), (_, ref) in flat:
        assert var[...].sharding == sharding.get_value(), path
        np.testing.assert_allclose(np.asarray(var[...]), np.asarray(ref[...]), rtol=0, atol=1e-6, err_msg=str(path))
    qkv = nnx.state(sharded)["double_blocks"]["img_attn_qkv"]["kernel"][...]
    assert qkv.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", None, "tensor", None)
