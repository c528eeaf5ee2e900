"""JAX's splash attention behind our convention, run interpreted on CPU, against XLA."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attention_cases import check_kernel, random_inputs

from hyv_jax.attention.splash import segment_ids, splash_attention


def test_segment_ids_cut_off_padded_keys():
    ids = segment_ids(jnp.array([3, 0, 5]), 4, 5)
    np.testing.assert_array_equal(ids.q, np.zeros((3, 4)))
    np.testing.assert_array_equal(ids.kv, [[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matches_xla(dtype):
    # 200 = 1.6 blocks of 128, padded inside; lengths: all keys and mid-block.
    q, k, v, d_out, _ = random_inputs(0, 2, 200, 200, 1, 32, dtype)
    kernel = functools.partial(splash_attention, block=128, interpret=True)
    check_kernel("splash", kernel, q, k, v, jnp.array([200, 70]), d_out)


def test_needs_a_tpu():
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(ValueError, match="TPU only"):
        splash_attention(q, q, q)


def test_lowers_for_tpu_at_model_head_dim(monkeypatch):
    """Forward and fused backward, bf16, head dim 128, default blocks, lower to Mosaic. The
    backend check is told it is on a TPU: lowering needs none."""
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    q = jax.ShapeDtypeStruct((1, 1000, 2, 128), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)

    def loss(q, k, v, lengths):
        return jnp.sum(splash_attention(q, k, v, lengths).astype(jnp.float32))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    text = grad.trace(q, q, q, lengths).lower(lowering_platforms=("tpu",)).as_text()
    assert text.count("tpu_custom_call") == 2, "expected the splash forward and fused backward kernels"
