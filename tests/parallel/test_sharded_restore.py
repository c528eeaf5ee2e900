"""A converted checkpoint restores straight into sharded parameters (8 simulated CPU devices)
and the sharded model computes what the single-device one does."""

import jax
import numpy as np
from flax import nnx
from helpers import fixture_params, load_fixture

from configs import load_config
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.transformer_checkpoint import abstract_transformer, convert_transformer, restore_transformer
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.parallel.logical_axes import param_shardings
from hyv_jax.parallel.mesh import make_mesh

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)


def test_restore_sharded_matches_single_device(tmp_path):
    assert jax.device_count() >= 8, "tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8"
    original = fixture_params(load_fixture("hyvideo_t2v_dit_tiny"))
    write_safetensors(tmp_path / "model.safetensors", original)
    convert_transformer(tmp_path / "model.safetensors", TINY, tmp_path / "orbax", dtype=np.float32)

    mesh = make_mesh({"fsdp": 4, "tensor": -1})
    shardings = param_shardings(abstract_transformer(TINY), mesh)
    sharded = restore_transformer(tmp_path / "orbax", shardings=shardings)
    single = restore_transformer(tmp_path / "orbax")

    qkv = ("double_blocks", "img_attn_qkv", "kernel")  # (layers, embed, 3, heads, head_dim)
    assert shardings[qkv].spec == jax.sharding.PartitionSpec(None, "fsdp", None, "tensor", None)
    for path, var in nnx.to_flat_state(nnx.state(sharded, nnx.Param)):
        assert var[...].sharding == shardings[tuple(path)], path
    a, b = params_to_numpy(sharded), params_to_numpy(single)
    assert all(np.array_equal(a[p], b[p]) for p in a)

    t = load_fixture("hyvideo_t2v_dit_tiny")
    args = (np.moveaxis(t["input.x"], 1, -1), t["input.t"], t["input.text_states"], t["input.text_mask"],
            t["input.text_states_2"], t["input.guidance"])
    run = lambda m: np.asarray(jax.jit(lambda model, *x: model(*x))(m, *args))  # noqa: E731
    np.testing.assert_allclose(run(sharded), run(single), rtol=0, atol=2e-6)
