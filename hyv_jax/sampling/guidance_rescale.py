"""Guidance rescale (Lin et al. 2023, sec. 3.4; diffusers' rescale_noise_cfg, which upstream's
pipeline copies): the guided prediction rescaled to the per-sample standard deviation of the
conditional one, blended in with weight `rescale`."""

import jax
import jax.numpy as jnp


def rescale_guidance(guided: jax.Array, conditional: jax.Array, rescale: jax.Array) -> jax.Array:
    """guided, conditional (B, ...) float32; rescale a scalar in [0, 1] (0: guided unchanged).
    Standard deviations over all but the batch axis, unbiased (torch.std's default)."""
    axes = tuple(range(1, guided.ndim))
    ratio = jnp.std(conditional, axis=axes, keepdims=True, ddof=1) / jnp.std(guided, axis=axes, keepdims=True, ddof=1)
    rescaled = rescale * (guided * ratio) + (1 - rescale) * guided
    return jnp.where(rescale > 0, rescaled, guided)
