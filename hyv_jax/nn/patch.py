"""Video <-> token sequence: patch embedding and its inverse, channels-last.

Tokens are flattened in (T', H', W') order; within a patch, features are (pt, ph, pw, C).
Upstream's Conv3d patch kernel (O, C, pt, ph, pw) and its final linear's (c, pt, ph, pw) output
order are permutations of these, applied by the converter.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.dense import Dense


def patch_grid(video_shape: Sequence[int], patch: Sequence[int]) -> tuple[int, int, int]:
    """(T', H', W') of a (B, T, H, W, C) video; fails on sides the patch does not divide."""
    _, t, h, w, _ = video_shape
    if t % patch[0] or h % patch[1] or w % patch[2]:
        raise ValueError(
            f"latent (T, H, W) = {(t, h, w)} is not divisible by the patch {tuple(patch)}; "
            f"use latent sides that are multiples of the patch (video sides multiples of {8 * patch[1]})"
        )
    return t // patch[0], h // patch[1], w // patch[2]


class PatchEmbed(nnx.Module):
    def __init__(self, patch: Sequence[int], in_channels: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.patch = tuple(patch)
        self.in_channels = in_channels
        self.proj = Dense(
            (*self.patch, in_channels), dim,
            in_axes=("patch_t", "patch_h", "patch_w", "channels"), out_axes=("embed",),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, T, H, W, C) -> (B, T'H'W', D)."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} latent channels (channels-last), got shape {x.shape}")
        b, c = x.shape[0], x.shape[-1]
        t, h, w = patch_grid(x.shape, self.patch)
        pt, ph, pw = self.patch
        x = x.reshape(b, t, pt, h, ph, w, pw, c).transpose(0, 1, 3, 5, 2, 4, 6, 7)
        return self.proj(x.reshape(b, t * h * w, pt, ph, pw, c))


def unpatchify(tokens: jax.Array, grid: Sequence[int], patch: Sequence[int]) -> jax.Array:
    """(B, T'H'W', pt, ph, pw, C) -> (B, T, H, W, C)."""
    b, c = tokens.shape[0], tokens.shape[-1]
    t, h, w = grid
    pt, ph, pw = patch
    x = tokens.reshape(b, t, h, w, pt, ph, pw, c).transpose(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, t * pt, h * ph, w * pw, c)
