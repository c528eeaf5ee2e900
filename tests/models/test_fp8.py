import ml_dtypes
import numpy as np
import torch

from hyv_jax.nn.fp8 import dequantize_fp8


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
