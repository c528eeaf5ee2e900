"""GroupNorm against torch's group_norm in float32, channels-last, with row counts that do and
do not split into the CPU form's blocks; the CPU form's channel sums are the plain sums."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from hyv_jax.nn.group_norm import GroupNorm, _channel_sums_cpu


@pytest.mark.parametrize("shape, groups", [((2, 3, 8, 8, 32), 32), ((1, 5, 6, 7, 64), 32), ((1, 1, 3, 5, 12), 4), ((2, 17, 12, 8, 128), 32)])
def test_group_norm_matches_torch(shape, groups):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 1.5).astype(np.float32)
    norm = GroupNorm(shape[-1], groups, eps=1e-6, rngs=nnx.Rngs(0))
    weight, bias = rng.standard_normal(shape[-1]).astype(np.float32), rng.standard_normal(shape[-1]).astype(np.float32)
    norm.weight[...], norm.bias[...] = jnp.asarray(weight), jnp.asarray(bias)
    ours = np.asarray(jax.jit(lambda x: norm(x))(jnp.asarray(x)))
    t = torch.from_numpy(np.moveaxis(x, -1, 1).copy())
    expected = np.moveaxis(torch.nn.functional.group_norm(t, groups, torch.from_numpy(weight), torch.from_numpy(bias), eps=1e-6).numpy(), 1, -1)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6 * np.abs(expected).max())


@pytest.mark.parametrize("rows, channels", [(4096, 32), (105, 32), (36, 128), (7, 3), (1, 512)])
def test_cpu_channel_sums_are_the_sums(rows, channels):
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, rows, channels)), jnp.float32)
    np.testing.assert_allclose(_channel_sums_cpu(x), np.asarray(x, np.float64).sum(1), rtol=1e-5, atol=1e-4)
