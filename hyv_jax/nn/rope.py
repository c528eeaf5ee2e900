"""3D rotary position embedding over (time, height, width) with interleaved pairs.

The head dimension is cut into per-axis slices ([16, 56, 56] for the 13B model); within a
slice of width d, pair (2i, 2i+1) rotates by pos * theta^(-2i/d). Upstream's theta is 256.
Tables are float32 and shaped (N, head_dim) with each frequency repeated for both members of
its pair.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def grid_positions(t: int, h: int, w: int) -> np.ndarray:
    """Integer (t, h, w) positions of a patched grid flattened in (T, H, W) order: (N, 3)."""
    grid = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([g.reshape(-1) for g in grid], axis=-1).astype(np.float32)


def rope_tables(positions: np.ndarray, axes_dims: Sequence[int], theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables (N, sum(axes_dims)) for static positions (N, len(axes_dims)).

    Computed on the host with upstream's fp32 steps, each correctly rounded (XLA's fp32 pow
    and cos are an ulp off on some entries); they are constants of the compiled step.
    """
    if positions.shape[-1] != len(axes_dims):
        raise ValueError(f"positions have {positions.shape[-1]} axes, rope axes_dims {tuple(axes_dims)}")
    angles = []
    for axis, dim in enumerate(axes_dims):
        if dim % 2:
            raise ValueError(f"rope axis dims must be even, got {tuple(axes_dims)}")
        # upstream's fp32 steps, each correctly rounded on the host (XLA's pow is not)
        ratio = (np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)).astype(np.float32)
        freqs = np.float32(1.0) / np.power(np.float64(theta), ratio.astype(np.float64)).astype(np.float32)
        angle = np.asarray(positions[:, axis], np.float32)[:, None] * freqs[None]
        angles.append(np.repeat(angle, 2, axis=-1))
    angles = np.concatenate(angles, axis=-1).astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates interleaved pairs of x (B, L, heads, head_dim) by tables (L, head_dim), in float32."""
    x32 = x.astype(jnp.float32)
    pairs = x32.reshape(*x.shape[:-1], -1, 2)
    rotated = jnp.stack([-pairs[..., 1], pairs[..., 0]], axis=-1).reshape(x.shape)
    out = x32 * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return out.astype(x.dtype)
