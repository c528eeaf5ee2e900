"""Our flash-attention kernels, run by the Pallas interpreter on CPU, against XLA attention:
the Triton kernel (pallas_gpu) and the Mosaic kernel (pallas_tpu); and their lowering for the
real platforms at the model's head dim."""

import functools

import jax
import jax.numpy as jnp
import pytest
from attention_cases import check_kernel, random_inputs

from hyv_jax.attention import pallas_gpu, pallas_tpu

# Blocks small enough for several per sequence: Triton tiles are powers of two >= 16; TPU tiles
# take query rows in multiples of 8 and keys in multiples of 128.
GPU = (pallas_gpu, dict(block_q=16, block_k=16, backward_blocks=(32, 16), interpret=True))
TPU = (pallas_tpu, dict(block_q=64, block_k=128, interpret=True))


@pytest.mark.parametrize("kernel, dtype, shape, lengths", [
    # (batch, Lq, Lk, heads, head dim). fp32: lengths not block multiples; valid lengths: all
    # keys, mid-block, exactly one block.
    pytest.param(GPU, jnp.float32, (3, 40, 40, 2, 32), [40, 23, 16], id="pallas_gpu-fp32"),
    pytest.param(TPU, jnp.float32, (3, 200, 200, 1, 32), [200, 77, 128], id="pallas_tpu-fp32"),
    # bf16: block-multiple lengths, Lq != Lk; a key block wholly in the padding; a sample
    # without any valid key (zeros, like the reference). GPU: head dim 24 padded to 32 inside.
    pytest.param(GPU, jnp.bfloat16, (3, 32, 48, 2, 24), [48, 5, 0], id="pallas_gpu-bf16"),
    pytest.param(TPU, jnp.bfloat16, (3, 128, 256, 2, 16), [256, 100, 0], id="pallas_tpu-bf16"),
])
def test_matches_xla(kernel, dtype, shape, lengths):
    module, settings = kernel
    q, k, v, d_out, d_lse = random_inputs(0, *shape, dtype)
    fn = functools.partial(module.flash_attention_with_lse, **settings)
    check_kernel(module.__name__, fn, q, k, v, jnp.array(lengths), d_out, d_lse)


@pytest.mark.parametrize("module, platform, seq_len", [(pallas_gpu, "cuda", 300), (pallas_tpu, "tpu", 1000)])
def test_lowers_for_the_platform_at_model_head_dim(module, platform, seq_len):
    """The real code path: forward and both backward kernels, bf16, head dim 128, default blocks,
    lower to Triton (CUDA) or Mosaic (TPU) without a device."""
    q = jax.ShapeDtypeStruct((1, seq_len, 2, 128), jnp.bfloat16)
    lengths = jax.ShapeDtypeStruct((1,), jnp.int32)

    def loss(q, k, v, lengths):
        out, lse = module.flash_attention_with_lse(q, k, v, lengths)
        return jnp.sum(out.astype(jnp.float32)) + jnp.sum(lse)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    text = grad.trace(q, q, q, lengths).lower(lowering_platforms=(platform,)).as_text()
    custom_call = "__gpu$xla.gpu.triton" if platform == "cuda" else "tpu_custom_call"
    assert text.count(custom_call) == 3, f"expected 3 {platform} kernels in the lowering"


@pytest.mark.parametrize("module, blocks, message", [
    (pallas_gpu, dict(block_q=24), "powers of two"),
    (pallas_tpu, dict(block_k=100), "multiple of 128"),
])
def test_bad_blocks(module, blocks, message):
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(ValueError, match=message):
        module.flash_attention(q, q, q, **blocks)
