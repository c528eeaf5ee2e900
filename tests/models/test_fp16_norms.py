"""The norms in fp16 with activations past fp16's square root of its range (256): their
statistics are float32 (x^2 of 3000 is 9e6, past 65504), so fp16 inputs at the scales of
Llama-3's massive activations or a VAE decoder's last blocks give what torch's fp16 norms give."""

import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx

from hyv_jax.nn.group_norm import GroupNorm
from hyv_jax.nn.norms import LayerNorm, RMSNorm


def _activations(shape, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2
    x[..., 3] = 3000.0
    x[..., 5] = -1200.0
    return x.astype(np.float16)


def test_layer_norm_and_rms_norm_in_fp16():
    x = _activations((2, 7, 64))
    t = torch.from_numpy(x)
    layer = np.asarray(LayerNorm(64, eps=1e-5, param_dtype=jnp.float16, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    expected = torch.nn.functional.layer_norm(t.float(), (64,), eps=1e-5).half().numpy()  # fp16 LayerNorm: float32 statistics
    assert layer.dtype == np.float16 and np.isfinite(layer).all()
    np.testing.assert_allclose(layer.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)
    rms = np.asarray(RMSNorm(64, eps=1e-5, param_dtype=jnp.float16, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    # transformers' LlamaRMSNorm: float32 statistics, cast back, then the weight
    expected = (t.float() * torch.rsqrt(t.float().pow(2).mean(-1, keepdim=True) + 1e-5)).half().numpy()
    assert rms.dtype == np.float16 and np.isfinite(rms).all()
    np.testing.assert_array_equal(rms, expected)


def test_group_norm_in_fp16():
    x = _activations((1, 2, 4, 4, 64))
    got = np.asarray(GroupNorm(64, 32, eps=1e-6, param_dtype=jnp.float16, rngs=nnx.Rngs(0))(jnp.asarray(x)))
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy()).float()
    expected = np.moveaxis(torch.nn.functional.group_norm(t, 32, eps=1e-6).half().numpy(), 1, -1)
    assert got.dtype == np.float16 and np.isfinite(got).all()
    np.testing.assert_allclose(got.astype(np.float32), expected.astype(np.float32), rtol=2e-3, atol=2e-3)
