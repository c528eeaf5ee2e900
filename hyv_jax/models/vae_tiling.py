"""Tiled encode/decode of the causal 3D VAE, with the official arithmetic.

A video (or latent) is cut into overlapping tiles along time and space; each tile goes through
one jitted function, so peak activation memory is set by the tile, not the video. Adjacent
outputs are blended linearly over the overlap and cropped, reproducing upstream exactly:

- sizes come from `int()` truncation: input stride = int(tile * (1 - overlap)), output blend =
  int(output tile * overlap), kept per tile = output tile - blend;
- a tile is blended with its already-blended upper and left neighbours (upstream blends in
  place, row by row), weights (1 - y/n, y/n) for y < n;
- temporal tiles take one extra input frame; every tile after the first drops its first output
  frame (the causal start duplicates its predecessor's last frame) and the first keeps one
  extra, so a latent of T frames still decodes to exactly 1 + 4(T-1) frames.

Tiling kicks in only above a size threshold (the tile size), as upstream's `enable_tiling()`.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

T_AXIS, H_AXIS, W_AXIS = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Tiles:
    """Tiling of one kind of axis: `size`/`stride` in input units, `blend`/`keep` in output units."""

    size: int
    stride: int
    blend: int
    keep: int

    @classmethod
    def from_overlap(cls, in_size: int, out_size: int, overlap: float) -> "Tiles":
        blend = int(out_size * overlap)
        stride = int(in_size * (1 - overlap))
        if stride < 1 or in_size < 1:
            raise ValueError(f"tile of {in_size} with overlap {overlap} has no stride; use larger tiles or a smaller overlap")
        return cls(in_size, stride, blend, out_size - blend)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """How to tile one direction (encode or decode); None turns tiling off along that axis."""

    spatial: Tiles | None
    temporal: Tiles | None

    def needs_spatial(self, x: jax.Array) -> bool:
        return self.spatial is not None and max(x.shape[H_AXIS], x.shape[W_AXIS]) > self.spatial.size

    def needs_temporal(self, x: jax.Array) -> bool:
        return self.temporal is not None and x.shape[T_AXIS] > self.temporal.size


UNTILED = TilePlan(None, None)


def blend(prev: jax.Array, tile: jax.Array, extent: int, axis: int) -> jax.Array:
    """`tile` with its first `extent` slices along `axis` mixed linearly into `prev`'s last ones."""
    extent = min(prev.shape[axis], tile.shape[axis], extent)
    if extent == 0:
        return tile
    ramp = np.arange(extent) / extent  # float64 like upstream's Python scalars, then rounded
    shape = [1] * tile.ndim
    shape[axis] = extent
    w_tile = jnp.asarray(ramp.astype(np.float32).reshape(shape), tile.dtype)
    w_prev = jnp.asarray((1 - ramp).astype(np.float32).reshape(shape), tile.dtype)
    head = jax.lax.slice_in_dim(prev, prev.shape[axis] - extent, prev.shape[axis], axis=axis) * w_prev
    head = head + jax.lax.slice_in_dim(tile, 0, extent, axis=axis) * w_tile
    return jnp.concatenate([head, jax.lax.slice_in_dim(tile, extent, tile.shape[axis], axis=axis)], axis=axis)


def _spatial(fn: Callable, x: jax.Array, tiles: Tiles) -> jax.Array:
    height, width = x.shape[H_AXIS], x.shape[W_AXIS]
    prev_row, rows = None, []
    for i in range(0, height, tiles.stride):
        row = []
        for j_index, j in enumerate(range(0, width, tiles.stride)):
            tile = fn(x[:, :, i : i + tiles.size, j : j + tiles.size])
            if prev_row is not None:
                tile = blend(prev_row[j_index], tile, tiles.blend, H_AXIS)
            if row:
                tile = blend(row[-1], tile, tiles.blend, W_AXIS)
            row.append(tile)
        rows.append(jnp.concatenate([t[:, :, : tiles.keep, : tiles.keep] for t in row], axis=W_AXIS))
        prev_row = row  # only the previous row is ever blended with: memory stays one row of tiles
    return jnp.concatenate(rows, axis=H_AXIS)


def _temporal(fn: Callable, x: jax.Array, plan: TilePlan) -> jax.Array:
    tiles, frames = plan.temporal, x.shape[T_AXIS]
    # a one-frame tail tile only yields the frame it drops, so it is skipped
    starts = [s for s in range(0, frames, tiles.stride) if s == 0 or frames - s > 1]
    prev, parts = None, []
    for s in starts:
        chunk = x[:, s : s + tiles.size + 1]
        tile = _spatial(fn, chunk, plan.spatial) if plan.needs_spatial(chunk) else fn(chunk)
        if prev is None:
            parts.append(tile[:, : tiles.keep + 1])
        else:
            tile = blend(prev, tile[:, 1:], tiles.blend, T_AXIS)
            parts.append(tile[:, : tiles.keep])
        prev = tile
    return jnp.concatenate(parts, axis=T_AXIS)


def tiled_apply(fn: Callable[[jax.Array], jax.Array], x: jax.Array, plan: TilePlan) -> jax.Array:
    """fn over (B, T, H, W, C) `x`, tiled by `plan` where `x` exceeds the tile size, else whole."""
    if plan.needs_temporal(x):
        return _temporal(fn, x, plan)
    if plan.needs_spatial(x):
        return _spatial(fn, x, plan.spatial)
    return fn(x)
