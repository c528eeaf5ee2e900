"""The official fp8 rounding (hyvideo/modules/fp8_optimization.py), bit for bit: dequantisation
and the quantiser."""

import jax
import ml_dtypes
import numpy as np
import pytest
import torch

from hyv_jax.nn.fp8 import dequantize_fp8, fp8_scale, quantize_fp8


def test_dequantisation_equals_the_official_bf16_product_bit_for_bit():
    rng = np.random.default_rng(0)
    w8 = (rng.standard_normal((64, 48)) * 100).astype(ml_dtypes.float8_e4m3fn)
    scale = np.float32(0.0123)  # a scale that bf16 rounds: the float32 product differs on ~21%
    ours = dequantize_fp8(w8, scale, ml_dtypes.bfloat16)
    # fp8_optimization.py: fp8_scale = fp8_map[key].to(bf16); weight.type(bf16) * scale.to(bf16)
    weight = torch.from_numpy(w8.view(np.uint8).copy()).view(torch.float8_e4m3fn)
    official = weight.type(torch.bfloat16) * torch.tensor(scale).to(torch.bfloat16)
    assert ours.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(ours.view(np.uint16), official.view(torch.uint16).numpy())
    # not the float32 product rounded once: that differs for a share of the weights
    assert (ours != (w8.astype(np.float32) * scale).astype(ml_dtypes.bfloat16)).any()


def official_quantization(weight: torch.Tensor):
    """hyvideo/modules/fp8_optimization.py as upstream runs it for a weight not yet in fp8
    (fp8_linear_forward, :59-63): scale = max|w| / get_fp_maxval() (a float32 tensor), then
    fp8_tensor_quant (the scale unsqueezed to the weight's rank, so x / scale is float32) and
    quantize_to_fp8, cast to float8_e4m3fn. Transcribed line by line."""
    bits, mantissa_bit, sign_bits = torch.tensor(8), torch.tensor(3), torch.tensor(1)
    M = torch.clamp(torch.round(mantissa_bit), 1, bits - sign_bits)
    E = bits - sign_bits - M
    bias = 2 ** (E - 1) - 1
    mantissa = 1
    for i in range(mantissa_bit - 1):
        mantissa += 1 / (2 ** (i + 1))
    maxval = mantissa * 2 ** (2**E - 1 - bias)
    scale = torch.max(torch.abs(weight.flatten())) / maxval
    for _ in range(len(weight.shape) - 1):
        scale = scale.unsqueeze(-1)
    x = weight / scale
    x = torch.min(torch.max(x, -maxval), maxval)
    log_scales = torch.clamp((torch.floor(torch.log2(torch.abs(x)) + bias)).detach(), 1.0)
    log_scales = 2.0 ** (log_scales - M - bias.type(x.dtype))
    qdq = torch.round(x / log_scales) * log_scales
    return qdq.to(torch.float8_e4m3fn), scale.reshape(())


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float32], ids=["bf16", "fp32"])
@pytest.mark.parametrize("where", ["numpy", "jit"])
def test_quantiser_equals_the_official_bit_for_bit(dtype, where):
    rng = np.random.default_rng(1)
    # a stack of 6 layers, each with its own range (tiny to large), subnormal fp8 values, zeros
    stack = (rng.standard_normal((6, 48, 40)) * np.logspace(-4, 2, 6)[:, None, None]
             * np.exp(2 * rng.standard_normal((6, 48, 1)))).astype(dtype)
    stack[:, :3] = 0
    if where == "numpy":
        scale = fp8_scale([stack], stacked=1)
        w8 = quantize_fp8(stack, scale)
    else:  # as loading quantises: one jitted program per group (XLA must keep the true divisions)
        w8, scale = jax.jit(lambda w: (quantize_fp8(w, s := fp8_scale([w], stacked=1)), s))(stack)
    torch_dtype = torch.bfloat16 if dtype == ml_dtypes.bfloat16 else torch.float32
    for layer in range(6):
        q, s = official_quantization(torch.from_numpy(stack[layer].astype(np.float32)).to(torch_dtype))
        np.testing.assert_array_equal(np.asarray(w8[layer]).view(np.uint8), q.view(torch.uint8).numpy())
        assert np.float32(scale[layer]) == s.item() and s.dtype == torch.float32


def test_an_all_zero_weight_quantises_to_zeros():
    # upstream leaves it unquantised (fp8_optimization.py:66, weight.sum() == 0): its forward uses zeros
    w8 = quantize_fp8(np.zeros((4, 5), np.float32), fp8_scale([np.zeros((4, 5), np.float32)]))
    assert not np.asarray(w8).astype(np.float32).any()


def test_fused_pieces_share_the_scale_of_the_whole():
    rng = np.random.default_rng(2)
    qkv, mlp = rng.standard_normal((3, 8, 12)).astype(np.float32), 3 * rng.standard_normal((3, 8, 4)).astype(np.float32)
    np.testing.assert_array_equal(fp8_scale([qkv, mlp], stacked=1), fp8_scale([np.concatenate([qkv, mlp], -1)], stacked=1))
