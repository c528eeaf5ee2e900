"""A causal 3x3x3 convolution of a nearest-upsampled video, computed from the video itself.

The VAE's upsampler repeats every frame after the first `ft` times and every pixel `fh` x `fw`
times (factors 1 or 2), pads by replication and convolves. Upsampled by 2, an output row reads
only two distinct input rows: even rows 2m read rows (m-1, m) through taps (k0, k1 + k2), odd
rows 2m+1 read (m, m+1) through (k0 + k1, k2); in time, frame 2j-1 reads frames (j-1, j)
through (k0 + k1, k2) and frame 2j reads them through (k0, k1 + k2). So every output phase is a
2-tap convolution of the low-resolution input with summed taps: for (2, 2, 2), 16 of the 54
multiply-adds per output of convolving the upsampled video, and the upsampled video is never
materialised. The time taps go in as input channels (frames j-1 and j side by side), both
output frames of a pair come out as output channels, so the convolutions write the output
frames in order. Same sums in another order: float32 rounding apart, the upsampler's result.
"""

import itertools

import jax
import jax.numpy as jnp

from hyv_jax.nn.backend_form import per_backend
from hyv_jax.nn.causal_conv import conv2d_frames, conv3d, pad_time, replicate_pad_space

# per factor, the phases of one spatial axis: (first row read in the input padded by one,
# the original taps each of the phase's taps sums)
_SPACE_PHASES = {1: [(0, [[0], [1], [2]])], 2: [(0, [[0], [1, 2]]), (1, [[0, 1], [2]])]}
# per factor, the output frames per input frame, each a list over the input frames it reads
# (oldest first: frames t-2, t-1, t for factor 1; j-1, j for 2) of the original taps it sums
_TIME_GROUPS = {1: [[[0], [1], [2]]], 2: [[[0, 1], [2]], [[0], [1, 2]]]}


def _sum_taps(k: jax.Array, axis: int, taps: list[list[int]]) -> jax.Array:
    """New taps along `axis`, each the sum of the listed original ones."""
    return jnp.stack([sum(jax.lax.index_in_dim(k, i, axis, keepdims=False) for i in group) for group in taps], axis=axis)


def _phase_kernel(kernel: jax.Array, time_groups, rows, cols) -> jax.Array:
    """(3, 3, 3, C, O) -> (len(rows), len(cols), inputs * C, groups * O), taps summed in float32."""
    k = _sum_taps(_sum_taps(kernel.astype(jnp.float32), 1, rows), 2, cols)
    return jnp.concatenate([
        jnp.concatenate([sum(k[t] for t in taps) for taps in group], axis=2) for group in time_groups
    ], axis=3).astype(kernel.dtype)


def nearest_upsample(x: jax.Array, factor: tuple[int, int, int]) -> jax.Array:
    """(B, T, H, W, C) -> (B, 1 + ft(T-1), fh H, fw W, C): every pixel repeated fh x fw times,
    every frame after the first ft times (the first stays one frame: causal)."""
    ft, fh, fw = factor
    x = jnp.repeat(jnp.repeat(x, fh, axis=2), fw, axis=3)
    return jnp.concatenate([x[:, :1], jnp.repeat(x[:, 1:], ft, axis=1)], axis=1)


def upsampled_causal_conv3d(x: jax.Array, kernel: jax.Array, factor: tuple[int, int, int]) -> jax.Array:
    """The valid convolution by a 3x3x3 DHWIO `kernel` of `x` (B, T, H, W, C) upsampled by
    `factor` (ft, fh, fw, each 1 or 2; nearest_upsample), padded by replication in space and
    with two copies of its first frame in front: (B, 1 + ft(T-1), fh H, fw W, O). On CPU as
    the output phases' convolutions of `x`; GPU and TPU convolve the upsampled video."""
    if kernel.shape[:3] != (3, 3, 3) or not set(factor) <= {1, 2}:
        raise ValueError(f"upsampled_causal_conv3d takes a 3x3x3 kernel and factors of 1 or 2, not {kernel.shape[:3]} and {factor}")

    def upsampled(x, k):
        return conv3d(replicate_pad_space(nearest_upsample(x, factor), 1), k, time_pad=2)

    return per_backend(x, kernel, cpu=lambda x, k: _phases(x, k, factor), default=upsampled)


def _phases(x: jax.Array, kernel: jax.Array, factor: tuple[int, int, int]) -> jax.Array:
    """upsampled_causal_conv3d's CPU form: one 2D convolution per spatial output phase."""
    ft, fh, fw = factor
    b, t, h, w, c = x.shape
    groups = _TIME_GROUPS[ft]
    inputs = len(groups[0])
    xp = replicate_pad_space(x, 1)
    # input frames t - inputs + 1 .. t side by side, oldest first (frame 0 before the start)
    xp = jnp.concatenate([pad_time(xp, inputs - 1 - i)[:, :t] for i in range(inputs)], axis=-1)
    phases = []
    for (row, rows), (col, cols) in itertools.product(_SPACE_PHASES[fh], _SPACE_PHASES[fw]):
        window = xp[:, :, row : row + h + len(rows) - 1, col : col + w + len(cols) - 1]
        y = conv2d_frames(window, _phase_kernel(kernel, groups, rows, cols), (1, 1))
        # (B, T, h, w, ft, O): output frames ft j - ft + 1 .. ft j, in order
        phases.append(y.reshape(b, t, h, w, ft, -1))
    out = jnp.stack(phases, axis=-2).reshape(b, t, h, w, ft, fh, fw, -1)
    out = out.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, ft * t, fh * h, fw * w, -1)
    return out[:, ft - 1 :]  # factor 2: frame 0 came out twice (its pair is frame 0 with itself)
