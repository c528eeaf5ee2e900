"""RoPE positions of the reference (identity) tokens: upstream's "timecat-w" layout.

Reference frame r sits at time -(r + 1), with the video's height positions and its width
positions shifted by one full latent width W' (upstream shifts width only, unlike the paper's
Eq. 1, which shifts both spatial axes). The released weights saw a single reference (time -1);
more references at -2, -3, ... extend the same rule.
"""

import numpy as np

from hyv_jax.nn.rope import grid_positions


def timecat_w_positions(grid: tuple[int, int, int], n_refs: int) -> np.ndarray:
    """(n_refs*H'*W' + T'*H'*W', 3) positions: the reference frames first, then the video grid."""
    t, h, w = grid
    refs = grid_positions(n_refs, h, w)
    refs[:, 0] = -1.0 - refs[:, 0]
    refs[:, 2] += w
    return np.concatenate([refs, grid_positions(t, h, w)])
