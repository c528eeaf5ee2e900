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


def embedded_guidance(scale: float | None, batch: int, dtype) -> np.ndarray | None:
    """The transformer's guidance input per sample (None for models without a guidance
    embedding), as upstream computes it: the scale rounded to the model's dtype, times 1000 in
    that dtype (hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py:976-982). In bf16 6.0 ->
    6016 like bf16(6000), but 1.45 -> 1456 (bf16(1450) = 1448) and 6.1 -> 6080 (6112). float32 values."""
    if scale is None:
        return None
    value = np.float32(np.float32(scale).astype(dtype)) * np.float32(1000.0)
    return np.full((batch,), value.astype(dtype), np.float32)


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


def combine_ip_cfg(velocity: jax.Array, scale: jax.Array, ip_scale: jax.Array) -> jax.Array:
    """HunyuanCustom's image CFG: velocity of a [negative; positive with a white reference;
    positive with the reference] batch -> uncond + scale * (text - uncond) + ip_scale * (ip - text),
    each op rounded to the velocity's dtype as upstream
    (hymm_sp/diffusion/pipelines/pipeline_hunyuan_video_custom.py:1035-1038)."""
    dtype = velocity.dtype
    uncond, text, image = jnp.split(velocity.astype(jnp.float32), 3)
    f32 = lambda value: jnp.asarray(value, jnp.float32)  # noqa: E731
    guided = rounded(uncond + rounded(f32(scale) * rounded(text - uncond, dtype), dtype), dtype)
    return (guided + rounded(f32(ip_scale) * rounded(image - text, dtype), dtype)).astype(dtype)


def ip_cfg_scales(start: float, steps: int) -> np.ndarray:
    """The image-CFG scale of each step: `start` at the first, lowered by (start - 1) / (steps -
    1 + 0.001) after each (so it ends just above 1), in Python floats as upstream
    (pipeline_hunyuan_video_custom.py:967-969,1038); float32 per step as torch uses it."""
    decrement = (start - 1.0) / (steps - 1 + 1e-3)
    scales = []
    for _ in range(steps):
        scales.append(start)
        start -= decrement  # repeated subtraction, not start - i * decrement: upstream's rounding
    return np.array(scales, np.float32)
