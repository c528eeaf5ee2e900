"""Images and videos <-> token sequences: patch embedding and its inverse, channels-last.

Works for any number of patched axes: a video (B, T, H, W, C) with a (pt, ph, pw) patch, an
image (B, H, W, C) with a (ph, pw) patch. Tokens are flattened in grid order ((T', H', W') or
(H', W')); within a patch, features are (*patch, C). Upstream's patch conv kernel
(O, C, *patch) and its final linear's (c, *patch) output order are permutations of these,
applied by the converter.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.dense import Dense

PATCH_AXES = ("patch_t", "patch_h", "patch_w")


def patch_axes(n: int) -> tuple[str, ...]:
    """Logical names of the last `n` patched axes (time only when there are three)."""
    return PATCH_AXES[len(PATCH_AXES) - n:]


def patch_grid(shape: Sequence[int], patch: Sequence[int]) -> tuple[int, ...]:
    """The token grid ((T', H', W') of a (B, T, H, W, C) video, (H', W') of a (B, H, W, C)
    image); fails on sides the patch does not divide."""
    sides = tuple(shape[1:-1])
    if len(sides) != len(patch) or any(s % p for s, p in zip(sides, patch)):
        raise ValueError(
            f"latent sides {sides} are not divisible by the patch {tuple(patch)}; "
            f"use latent sides that are multiples of the patch (pixel sides multiples of {8 * patch[-1]})"
        )
    return tuple(s // p for s, p in zip(sides, patch))


def _interleave(n: int) -> tuple[int, ...]:
    """Axis order taking (B, g0, p0, g1, p1, ..., C) to (B, g0, g1, ..., p0, p1, ..., C)."""
    return (0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)


class PatchEmbed(nnx.Module):
    def __init__(self, patch: Sequence[int], in_channels: int, dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.patch = tuple(patch)
        self.in_channels = in_channels
        self.proj = Dense(
            (*self.patch, in_channels), dim,
            in_axes=(*patch_axes(len(self.patch)), "channels"), out_axes=("embed",),
            dtype=dtype, param_dtype=param_dtype, rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, *sides, C) -> (B, prod(grid), D)."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} latent channels (channels-last), got shape {x.shape}")
        b, c = x.shape[0], x.shape[-1]
        grid = patch_grid(x.shape, self.patch)
        split = [d for g, p in zip(grid, self.patch) for d in (g, p)]
        x = x.reshape(b, *split, c).transpose(_interleave(len(grid)))
        return self.proj(x.reshape(b, -1, *self.patch, c))


def unpatchify(tokens: jax.Array, grid: Sequence[int], patch: Sequence[int]) -> jax.Array:
    """(B, prod(grid), *patch, C) -> (B, *sides, C)."""
    b, c, n = tokens.shape[0], tokens.shape[-1], len(grid)
    x = tokens.reshape(b, *grid, *patch, c)
    order = (0, *[a for i in range(n) for a in (1 + i, 1 + n + i)], 2 * n + 1)
    return x.transpose(order).reshape(b, *[g * p for g, p in zip(grid, patch)], c)
