"""3D convolutions over channels-last video (B, T, H, W, C).

`Conv3d` is a plain valid convolution with a (kt, kh, kw, in, out) kernel; `CausalConv3d`
wraps one (as `.conv`, the upstream module path) after padding time with k-1 copies of the
first frame in front and space by replication, so frame t never sees frames after t and a
single frame encodes the same alone as at the start of a video.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.nn.backend_form import per_backend
from hyv_jax.nn.params import fan_in_normal, make_param, zeros

CONV_AXES = ("conv_t", "conv_h", "conv_w", "channels", "channels_out")


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


def pad_time(x: jax.Array, frames: int) -> jax.Array:
    """`frames` copies of the first frame in front: the causal padding."""
    return jnp.concatenate([jnp.repeat(x[:, :1], frames, axis=1), x], axis=1) if frames else x


def _conv3d_direct(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, stride, "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def conv2d_frames(x: jax.Array, kernel: jax.Array, stride: tuple[int, int]) -> jax.Array:
    """A 2D convolution of every frame of (B, T, H, W, C) `x` (frames folded into the batch)."""
    y = jax.lax.conv_general_dilated(x.reshape(-1, *x.shape[2:]), kernel, stride, "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.reshape(*x.shape[:2], *y.shape[1:])


def _conv3d_frame_taps(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    """The same convolution as a sum over the kt time taps of 2D convolutions of every output
    frame's input frame at that tap."""
    kt, st = kernel.shape[0], stride[0]
    frames = (x.shape[1] - kt) // st + 1
    out = None
    for tap in range(kt):
        y = conv2d_frames(jax.lax.slice_in_dim(x, tap, tap + st * (frames - 1) + 1, st, axis=1), kernel[tap], stride[1:])
        out = y if out is None else out + y
    return out


def _causal_conv3d_stacked_taps(x: jax.Array, kernel: jax.Array, stride: tuple[int, int]) -> jax.Array:
    """The causal convolution (kt-1 copies of frame 0 in front, time stride 1) as ONE 2D
    convolution of every input frame with the kt taps' kernels stacked along the output
    channels, the tap outputs then summed at their time offsets, frame 0's standing in for the
    padding frames. Same arithmetic as per-tap convolutions of the padded input, without
    copying the input once per tap, and one larger matmul for YNNPACK: 0.97-1.19x torch's
    conv3d at the decoder's shapes where the per-tap form is 0.73-0.97x (bench/conv3d_forms.py)."""
    kt, kh, kw, cin, cout = kernel.shape
    stacked = kernel.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin, kt * cout)
    y = conv2d_frames(x, stacked, stride)
    y = y.reshape(*y.shape[:-1], kt, cout)
    # tap d of output frame f reads input frame f + d - (kt - 1), frame 0 before the start; the
    # frames past the padding as one sum of slices, which XLA fuses into a single pass
    t, last = y.shape[1], kt - 1
    head = [sum(y[:, max(f + d - last, 0), ..., d, :] for d in range(kt)) for f in range(min(last, t))]
    rest = [sum(y[:, d : t - last + d, ..., d, :] for d in range(kt))] if t > last else []
    return jnp.concatenate(([jnp.stack(head, axis=1)] if head else []) + rest, axis=1)


def replicate_pad_space(x: jax.Array, p: int) -> jax.Array:
    """(B, T, H, W, C) padded by `p` copies of its edge rows and columns. On CPU as one indexed
    copy: jnp.pad's edge mode is two concatenations there, two passes over the activations
    (a 17x96x64x32 layer: 3.6 ms against 5.4 ms)."""
    if not p:
        return x

    def indexed(x):
        rows = np.clip(np.arange(-p, x.shape[2] + p), 0, x.shape[2] - 1)
        cols = np.clip(np.arange(-p, x.shape[3] + p), 0, x.shape[3] - 1)
        return x[:, :, rows[:, None], cols[None, :]]

    return per_backend(x, cpu=indexed, default=lambda x: jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), mode="edge"))


# XLA:CPU's own 2D convolution is slow at the VAE's channel counts (0.2-0.4x torch's oneDNN);
# compiled with these options it hands each one to YNNPACK: at 19x194x258x32 the per-tap form
# takes 0.44 s against 2.46 s without them, 0.96 s as Winograd F(2x2, 3x3) matmuls and 0.41 s
# in torch (bench/conv3d_forms.py). The VAE's programs compile with them (models/vae.py).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def conv3d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int] = (1, 1, 1), time_pad: int = 0) -> jax.Array:
    """Valid 3D convolution, NDHWC x DHWIO -> NDHWC, of `x` after `time_pad` copies of its first
    frame (the causal padding), formulated per backend (chosen when the program is lowered): on
    CPU XLA's 3D convolution is several times slower than torch's at the VAE's shapes
    (bench/conv3d_forms.py), so there it runs as 2D convolutions, which programs compiled with
    CPU_COMPILER_OPTIONS hand to YNNPACK: one with the time taps stacked in its output for the
    causal stride-1 convolutions, one per time tap otherwise; GPU and TPU keep the single 3D
    convolution their compilers tile directly. A 1x1x1 kernel is a matmul everywhere."""
    if kernel.shape[:3] == (1, 1, 1):
        x = pad_time(x, time_pad)
        return jnp.einsum("bthwc,co->bthwo", x[:, :: stride[0], :: stride[1], :: stride[2]], kernel[0, 0, 0])

    def direct(x, k):
        return _conv3d_direct(pad_time(x, time_pad), k, stride)

    def cpu(x, k):
        if time_pad == k.shape[0] - 1 and stride[0] == 1:
            return _causal_conv3d_stacked_taps(x, k, stride[1:])
        return _conv3d_frame_taps(pad_time(x, time_pad), k, stride)

    return per_backend(x, kernel, cpu=cpu, default=direct)


class Conv3d(nnx.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.kernel_size = _triple(kernel_size)
        self.stride = _triple(stride)
        self.dtype = dtype
        self.kernel = make_param(rngs, fan_in_normal(4), (*self.kernel_size, in_channels, out_channels), CONV_AXES, param_dtype)
        self.bias = make_param(rngs, zeros, (out_channels,), ("channels_out",), param_dtype)

    def __call__(self, x: jax.Array, time_pad: int = 0) -> jax.Array:
        """`time_pad`: copies of the first frame taken as in front of `x` (conv3d)."""
        return self.apply(lambda x, k: conv3d(x, k, self.stride, time_pad), x)

    def apply(self, conv: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array) -> jax.Array:
        """`conv`(x, kernel) in the compute dtype, plus the bias."""
        y = conv(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        # output in the compute dtype (the kernels accumulate in float32 anyway): in bf16 a
        # float32 output would double the size of every full-resolution activation
        return y + self.bias[...].astype(self.dtype)


class CausalConv3d(nnx.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int | Sequence[int] = 1, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.pad = kernel_size // 2
        self.time_pad = kernel_size - 1
        self.conv = Conv3d(in_channels, out_channels, kernel_size, stride=stride, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(replicate_pad_space(x, self.pad), self.time_pad)  # time padded inside: on CPU it is never materialised
