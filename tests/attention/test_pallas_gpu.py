"""Our Triton flash-attention kernel, run by the Pallas interpreter on CPU, against XLA."""

import functools

import jax
import jax.numpy as jnp
import pytest
from attention_cases import check_kernel, random_inputs

from hyv_jax.attention import pallas_gpu

BLOCKS = dict(block_q=16, block_k=16, interpret=True)


def test_fp32_unaligned_lengths_with_lse():
    # 40 = 2.5 blocks; lengths: all keys, mid-block, exactly one block.
    q, k, v, d_out, d_lse = random_inputs(0, 3, 40, 40, 2, 32, jnp.float32)
    kernel = functools.partial(pallas_gpu.flash_attention_with_lse, **BLOCKS)
    check_kernel("pallas_gpu", kernel, q, k, v, jnp.array([40, 23, 16]), d_out, d_lse)


def test_bf16_aligned_cross_lengths():
    # 32 queries (2 blocks) against 48 keys (3 blocks); head dim 24 is padded to 32 inside; the
    # last sample has no valid key at all (zeros, like the reference).
    q, k, v, d_out, _ = random_inputs(1, 3, 32, 48, 2, 24, jnp.bfloat16)
    kernel = functools.partial(pallas_gpu.flash_attention, **BLOCKS)
    check_kernel("pallas_gpu", kernel, q, k, v, jnp.array([48, 5, 0]), d_out)


def test_lowers_to_triton_at_model_shape():
    """The real GPU path: forward and backward at head dim 128 in bf16 lower to Triton IR."""
    q = jax.ShapeDtypeStruct((1, 300, 2, 128), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)

    def loss(q, k, v, lengths):
        out, lse = pallas_gpu.flash_attention_with_lse(q, k, v, lengths)
        return jnp.sum(out.astype(jnp.float32)) + jnp.sum(lse)

    lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).trace(q, q, q, lengths).lower(lowering_platforms=("cuda",))
    text = lowered.as_text()
    for name in ("hyv_flash_fwd", "hyv_flash_dkdv", "hyv_flash_dq"):
        assert name in text, f"{name} missing from the CUDA lowering"


def test_bad_blocks():
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(ValueError, match="powers of two"):
        pallas_gpu.flash_attention(q, q, q, block_q=24)
