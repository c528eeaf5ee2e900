"""Initial noise and VAE posterior samples as upstream draws them: float32 normals rounded to the
working dtype (torch's CUDA generator draws float32 normals for a half tensor), not normals
drawn in half precision (about 1000 distinct values, tails cut at |x| 3.5)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from hyv_jax.models.vae import sample_posterior
from hyv_jax.sampling.noise import initial_noise

SHAPE = (9, 45, 80, 16)  # a 360x640 latent of 33 frames: 518k values


def test_fp16_noise_is_float32_normals_rounded():
    noise = np.asarray(initial_noise([3, 4], SHAPE, "float16"))
    assert noise.dtype == np.float32 and noise.shape == (2, *SHAPE)
    for row, seed in zip(noise, (3, 4)):
        expected = jax.random.normal(jax.random.key(seed), SHAPE, jnp.float32).astype(jnp.float16)
        np.testing.assert_array_equal(row, np.asarray(expected, np.float32))
    # what fp16 rounding of float32 normals gives: tens of thousands of values, tails past 4
    assert len(np.unique(noise[0])) > 20_000 and np.abs(noise[0]).max() > 4.4


def test_float32_noise_is_unrounded():
    noise = np.asarray(initial_noise([3], SHAPE, "float32"))
    np.testing.assert_array_equal(noise[0], np.asarray(jax.random.normal(jax.random.key(3), SHAPE, jnp.float32)))


def test_posterior_sample_in_the_vae_dtype_as_upstream():
    """DiagonalGaussianDistribution.sample (hyvideo/vae/vae.py:313-322): randn_tensor in the
    parameters' dtype, then mean + std * sample, each op in that dtype (fp16 VAE)."""
    rng = np.random.default_rng(0)
    mean = jnp.asarray(rng.standard_normal((1, 2, 6, 8, 16)), jnp.float16)
    logvar = jnp.asarray(rng.uniform(-12, 2, (1, 2, 6, 8, 16)), jnp.float16)
    key = jax.random.key(7)
    got = sample_posterior(mean, logvar, key)
    assert got.dtype == jnp.float16
    draw = torch.from_numpy(np.array(jax.random.normal(key, mean.shape, jnp.float32))).half()
    t_mean, t_logvar = (torch.from_numpy(np.array(a)) for a in (mean, logvar))
    expected = t_mean + torch.exp(0.5 * t_logvar) * draw
    np.testing.assert_array_equal(np.asarray(got), expected.numpy())
