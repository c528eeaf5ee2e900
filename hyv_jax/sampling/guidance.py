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


def rounded(x: jax.Array, dtype) -> jax.Array:
    """float32 x rounded to `dtype` (kept float32): what one op on torch tensors of that dtype
    stores. reduce_precision rather than a cast pair, which XLA may drop (it allows excess
    precision); in fp16 it flushes subnormals (|x| < 6.1e-5) to zero."""
    info = jnp.finfo(dtype)
    return jax.lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def combine_cfg(velocity: jax.Array, scale: jax.Array) -> jax.Array:
    """Velocity of a [negative; positive] batch -> neg + scale * (pos - neg) on the positive half,
    each op rounded to the velocity's (the model's) dtype as upstream computes it on the bf16
    model output (hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py:1006-1010,
    hymm_sp/diffusion/pipelines/pipeline_hunyuan_video_custom.py:1031-1033); the scale stays float32."""
    dtype = velocity.dtype
    negative, positive = jnp.split(velocity.astype(jnp.float32), 2)
    step = rounded(jnp.asarray(scale, jnp.float32) * rounded(positive - negative, dtype), dtype)
    return (negative + step).astype(dtype)
