"""Guidance: the embedded (distilled) scale the transformer takes as an input, and true
classifier-free guidance over a [negative, positive] batch."""

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from hyv_jax.models.text.text_encoder import PromptEmbeddings

# upstream's default negative prompt for true CFG (cfg-scale > 1)
DEFAULT_NEGATIVE_PROMPT = (
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, "
    "bad teeth, bad eyes, bad limbs, distortion"
)


def embedded_guidance(scale: float | None, batch: int) -> np.ndarray | None:
    """The transformer's guidance input, scale * 1000 per sample (None for models without a
    guidance embedding). float32 here; the transformer rounds it to its compute dtype as
    upstream does (6000 -> 6016 in bfloat16)."""
    return None if scale is None else np.full((batch,), scale * 1000.0, np.float32)


def cfg_batch(negative: "PromptEmbeddings", positive: "PromptEmbeddings") -> "PromptEmbeddings":
    """One batch [negative..., positive...] so both predictions come from one forward."""
    if negative.states.shape[1:] != positive.states.shape[1:]:
        raise ValueError(
            f"negative prompt states {negative.states.shape} and positive {positive.states.shape} must share (L, D); "
            "encode both with the same text encoder"
        )
    return dataclasses.replace(positive, **{f: np.concatenate([getattr(negative, f), getattr(positive, f)]) for f in ("states", "mask", "pooled")})


def combine_cfg(velocity: jax.Array, scale: jax.Array) -> jax.Array:
    """Velocity of a [negative; positive] batch -> neg + scale * (pos - neg) on the positive half."""
    negative, positive = jnp.split(velocity.astype(jnp.float32), 2)
    return negative + jnp.asarray(scale, jnp.float32) * (positive - negative)
