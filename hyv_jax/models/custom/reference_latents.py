"""Reference images -> HunyuanCustom's `ref_latents`: each image padded to the video's size on
white, encoded by the causal VAE as a one-frame video, **sampled** from the posterior (as
upstream's `latent_dist.sample()`), times the scaling factor; several images become frames
1..R of the reference (RoPE times -1, -2, ...)."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.models.custom.reference_image import vae_reference
from hyv_jax.models.vae import CausalVideoVAE, sample_posterior


def reference_latents(vae: CausalVideoVAE, images: Sequence[np.ndarray], width: int, height: int, rng: jax.Array) -> jax.Array:
    """(1, R, height/8, width/8, latent) from R uint8 RGB images; `rng` seeds the posterior samples."""
    if not images:
        raise ValueError("HunyuanCustom needs at least one reference image")
    frames = []
    for image, key in zip(images, jax.random.split(rng, len(images)), strict=True):
        mean, logvar = vae.encode(jnp.asarray(vae_reference(image, width, height)))
        frames.append(sample_posterior(mean, logvar, key) * vae.config.scaling_factor)
    return jnp.concatenate(frames, axis=1)
