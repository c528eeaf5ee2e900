"""Latents -> video frames, as upstream: divide by the VAE scaling factor, decode (tiled or
not), map [-1, 1] to [0, 1] with (x / 2 + 0.5) clipped, and uint8 by truncating x * 255."""

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.models.vae import CausalVideoVAE
from hyv_jax.models.vae_tiling import UNTILED
from hyv_jax.persistent_cache import PersistentProgram


def _scaled(latents: jax.Array, scaling_factor: jax.Array, dtype) -> jax.Array:
    return (latents.astype(jnp.float32) / scaling_factor).astype(dtype)


def _frames(video: jax.Array) -> jax.Array:
    return jnp.clip(video.astype(jnp.float32) / 2 + 0.5, 0.0, 1.0)


# the ops around the decoder as two programs kept across processes, not five eager dispatches
SCALED = PersistentProgram(_scaled, "scaled_latents", static_argnums=(2,))
FRAMES = PersistentProgram(_frames, "video_frames")


def decode_latents(vae: CausalVideoVAE, latents: jax.Array, *, tiling: bool = True) -> jax.Array:
    """(B, T, h, w, C) sampled latents -> (B, 1 + 4(T-1), 8h, 8w, 3) float32 video in [0, 1]."""
    plan = vae.config.decode_plan() if tiling else UNTILED
    scaled = SCALED(jnp.asarray(latents), np.float32(vae.config.scaling_factor), jnp.dtype(vae.config.dtype))
    return FRAMES(vae.decode(scaled, plan=plan))


def to_uint8(video: jax.Array) -> np.ndarray:
    """[0, 1] float -> uint8 by truncation (upstream's `(x * 255).numpy().astype(np.uint8)`)."""
    return (np.asarray(video, np.float32) * np.float32(255)).astype(np.uint8)
