"""Hunyuan-DiT's 2D rotary embedding of the image tokens ("rope_img base512", rope_real).

The (h, w) token grid is squeezed into the grid of a 512 px square image (`base_grid` = 32
tokens a side): the grid is resized to fit the square keeping its aspect ratio, centred, and
its positions are spread evenly over that crop, fractional where the grid is larger than the
base (hydit/modules/posemb_layers.py:get_fill_resize_and_crop, get_meshgrid, calc_sizes). The
first half of each head is rotated by the x (column) position, the second half by the y (row)
position (get_meshgrid stacks (w, h): "here w goes first"); pairs are interleaved with theta
10000 (get_1d_rotary_pos_embed).

diffusers computes the grid as linspace(start, stop * (n-1)/n, n), which equals upstream's
linspace(start, stop, n, endpoint=False) only when the crop starts at 0, i.e. for square
images; non-square images follow upstream here.
"""

import numpy as np

from hyv_jax.nn.rope import rope_tables

THETA = 10000.0


def crop_region(grid: tuple[int, int], base: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(top, left), (bottom, right) of the (h, w) grid resized into a base x base square and
    centred (posemb_layers.py:get_fill_resize_and_crop with a square target; Python's round)."""
    h, w = grid
    if h / w > 1:
        resize_h, resize_w = base, int(round(base / h * w))
    else:
        resize_w, resize_h = base, int(round(base / w * h))
    top, left = int(round((base - resize_h) / 2.0)), int(round((base - resize_w) / 2.0))
    return (top, left), (top + resize_h, left + resize_w)


def grid_positions_2d(grid: tuple[int, int], base: int) -> np.ndarray:
    """(h*w, 2) float32 (x, y) positions of the tokens in row-major order."""
    (top, left), (bottom, right) = crop_region(grid, base)
    ys = np.linspace(top, bottom, grid[0], endpoint=False, dtype=np.float32)
    xs = np.linspace(left, right, grid[1], endpoint=False, dtype=np.float32)
    x, y = np.meshgrid(xs, ys)
    return np.stack([x.reshape(-1), y.reshape(-1)], axis=-1)


def image_rope(head_dim: int, grid: tuple[int, int], base: int) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin tables (h*w, head_dim) for an (h, w) token grid."""
    if head_dim % 4:
        raise ValueError(f"2D RoPE needs a head dim divisible by 4, got {head_dim}")
    return rope_tables(grid_positions_2d(grid, base), (head_dim // 2, head_dim // 2), THETA)
