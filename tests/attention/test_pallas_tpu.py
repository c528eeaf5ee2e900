"""Our Mosaic (TPU) flash-attention kernel, run by the TPU interpreter on CPU, against XLA."""

import functools

import jax
import jax.numpy as jnp
import pytest
from attention_cases import check_kernel, random_inputs

from hyv_jax.attention import pallas_tpu

# The smallest legal TPU tiles: 8 query rows, 128 keys.
BLOCKS = dict(block_q=64, block_k=128, interpret=True)


def test_fp32_unaligned_lengths_with_lse():
    # 200 keys = 1.6 key blocks, 200 queries = 3.1 query blocks; lengths: all, mid-block, one block.
    q, k, v, d_out, d_lse = random_inputs(0, 3, 200, 200, 1, 32, jnp.float32)
    kernel = functools.partial(pallas_tpu.flash_attention_with_lse, **BLOCKS)
    check_kernel("pallas_tpu", kernel, q, k, v, jnp.array([200, 77, 128]), d_out, d_lse)


def test_bf16_aligned_lengths():
    # 128 queries, 256 keys (2 key blocks); the second block of sample 1 is all padding and
    # sample 2 has no valid key.
    q, k, v, d_out, _ = random_inputs(1, 3, 128, 256, 2, 16, jnp.bfloat16)
    kernel = functools.partial(pallas_tpu.flash_attention, **BLOCKS)
    check_kernel("pallas_tpu", kernel, q, k, v, jnp.array([256, 100, 0]), d_out)


def test_lowers_to_mosaic_at_model_shape():
    """The real TPU path: forward and backward at head dim 128 in bf16 lower to Mosaic."""
    q = jax.ShapeDtypeStruct((1, 1000, 2, 128), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)

    def loss(q, k, v, lengths):
        out, lse = pallas_tpu.flash_attention_with_lse(q, k, v, lengths, block_q=256, block_k=512)
        return jnp.sum(out.astype(jnp.float32)) + jnp.sum(lse)

    lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, q, q, lengths).lower(lowering_platforms=("tpu",))
    assert lowered.as_text().count("tpu_custom_call") >= 3


def test_bad_blocks():
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(ValueError, match="multiple of 128"):
        pallas_tpu.flash_attention(q, q, q, block_k=100)
