"""Initial noise: one generator per video (seed + i, as upstream), so a video does not depend on
how many others share its batch.

Drawn channels-last (T, H, W, C) per video as float32 normals, then rounded to `dtype`:
"float16" is upstream (`randn_tensor(..., dtype=prompt_embeds.dtype)`, fp16 with the fp16 text
encoders, hyvideo/diffusion/pipelines/pipeline_hunyuan_video.py:584; torch's CUDA generator
draws float32 normals and rounds them), "float32" is diffusers' choice. Either way the result is
float32, the dtype the Euler solver keeps. JAX's generator is not torch's: the same seed gives a
different (equally distributed) video than the PyTorch code.
"""

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.persistent_cache import PersistentProgram

# upstream rounds it to the text encoders' dtype (the prompt embeddings', pipeline_hunyuan_video.py:928-934)
NOISE_DTYPES = ("float16", "bfloat16", "float32")
MAX_SEED = 2**64 - 1


def seed_key(seed: int) -> jax.Array:
    """The generator key of a seed in [0, 2^64): its two 32-bit halves are the threefry key, as
    jax.random.key builds it from a 64-bit integer. Seeds below 2^32 give jax.random.key(seed)
    (which, without jax_enable_x64, would wrap larger seeds to 32 bits and overflow at 2^63);
    distinct seeds give distinct keys."""
    return jax.random.wrap_key_data(seed_key_data(seed), impl="threefry2x32")


def seed_key_data(seed: int) -> np.ndarray:
    """seed_key's (2,) uint32 data, on the host."""
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} must be in 0..{MAX_SEED} (64 bits)")
    return np.array([seed >> 32, seed & 0xFFFFFFFF], np.uint32)


def video_seeds(seed: int, count: int) -> list[int]:
    return [seed + i for i in range(count)]


def _normals(key_data: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    return jax.random.normal(jax.random.wrap_key_data(key_data, impl="threefry2x32"), shape, jnp.float32)


# one program per latent shape, kept across processes (the tiny default's run: ~0.1 s of eager
# dispatch, tracing and lowering saved)
NORMALS = PersistentProgram(_normals, "initial_noise", static_argnums=(1,))


def initial_noise(seeds: list[int], latent_shape: tuple[int, int, int, int], dtype: str = "float16") -> np.ndarray:
    """(len(seeds), T, H, W, C) float32 standard normal noise on the host, video i from seeds[i]."""
    if dtype not in NOISE_DTYPES:
        raise ValueError(f"noise dtype must be one of {NOISE_DTYPES}, got {dtype!r}")
    # drawn in float32: normals drawn directly in fp16 take only ~1000 distinct values, |x| <= 3.5;
    # rounded on the host (round to nearest even, as XLA's convert), where no compiler may fold
    # the float32 -> dtype -> float32 round trip away
    draws = [np.asarray(NORMALS(seed_key_data(s), tuple(latent_shape))) for s in seeds]
    return np.stack(draws).astype(jnp.dtype(dtype)).astype(np.float32)


def latent_shape(frames: int, height: int, width: int, channels: int, temporal_ratio: int = 4, spatial_ratio: int = 8) -> tuple[int, int, int, int]:
    """(T, H, W, C) of the latent video for `frames` x `height` x `width` pixels."""
    return ((frames - 1) // temporal_ratio + 1, height // spatial_ratio, width // spatial_ratio, channels)
