"""Latents -> video frames, as upstream: divide by the VAE scaling factor, decode (tiled or
not), map [-1, 1] to [0, 1] with (x / 2 + 0.5) clipped, and uint8 by truncating x * 255."""

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.models.vae import CausalVideoVAE
from hyv_jax.models.vae_tiling import UNTILED


def decode_latents(vae: CausalVideoVAE, latents: jax.Array, *, tiling: bool = True) -> jax.Array:
    """(B, T, h, w, C) sampled latents -> (B, 1 + 4(T-1), 8h, 8w, 3) float32 video in [0, 1]."""
    plan = vae.config.decode_plan() if tiling else UNTILED
    scaled = (jnp.asarray(latents, jnp.float32) / vae.config.scaling_factor).astype(vae.config.dtype)
    video = vae.decode(scaled, plan=plan).astype(jnp.float32)
    return jnp.clip(video / 2 + 0.5, 0.0, 1.0)


def to_uint8(video: jax.Array) -> np.ndarray:
    """[0, 1] float -> uint8 by truncation (upstream's `(x * 255).numpy().astype(np.uint8)`)."""
    return (np.asarray(video, np.float32) * np.float32(255)).astype(np.uint8)
