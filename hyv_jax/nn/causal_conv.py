"""3D convolutions over channels-last video (B, T, H, W, C).

`Conv3d` is a plain valid convolution with a (kt, kh, kw, in, out) kernel; `CausalConv3d`
wraps one (as `.conv`, the upstream module path) after padding time with k-1 copies of the
first frame in front and space by replication, so frame t never sees frames after t and a
single frame encodes the same alone as at the start of a video.
"""

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import fan_in_normal, make_param, zeros

CONV_AXES = ("conv_t", "conv_h", "conv_w", "channels", "channels_out")
_ACCELERATOR_FORM = contextvars.ContextVar("accelerator_form", default=False)


@contextlib.contextmanager
def accelerator_form() -> Iterator[None]:
    """Programs traced inside use the GPU/TPU formulation on every backend: a memory plan
    compiled on a CPU host then holds the buffers the accelerator would (hyv_jax/sampling/memory_plan.py)."""
    token = _ACCELERATOR_FORM.set(True)
    try:
        yield
    finally:
        _ACCELERATOR_FORM.reset(token)


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


def _conv3d_direct(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, stride, "VALID", dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def _conv3d_frame_taps(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    """The same convolution as a sum over the kt time taps of 2D convolutions of every output
    frame's input frame at that tap (frames folded into the batch)."""
    kt, st, b = kernel.shape[0], stride[0], x.shape[0]
    frames = (x.shape[1] - kt) // st + 1
    out = None
    for tap in range(kt):
        xs = jax.lax.slice_in_dim(x, tap, tap + st * (frames - 1) + 1, st, axis=1)
        y = jax.lax.conv_general_dilated(xs.reshape(b * frames, *x.shape[2:]), kernel[tap], stride[1:], "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        out = y if out is None else out + y
    return out.reshape(b, frames, *out.shape[1:])


# XLA:CPU's own 2D convolution is slow at the VAE's channel counts (0.2-0.4x torch's oneDNN);
# compiled with these options it hands each one to YNNPACK: at 19x194x258x32 the per-tap form
# takes 0.44 s against 2.46 s without them, 0.96 s as Winograd F(2x2, 3x3) matmuls and 0.41 s
# in torch (bench/conv3d_forms.py). The VAE's programs compile with them (models/vae.py).
CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}


def conv3d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int] = (1, 1, 1)) -> jax.Array:
    """Valid 3D convolution, NDHWC x DHWIO -> NDHWC, formulated per backend (chosen when the
    program is lowered): on CPU XLA's 3D convolution is several times slower than torch's at
    the VAE's shapes (bench/conv3d_forms.py), so there it runs as 2D convolutions per time tap,
    which programs compiled with CPU_COMPILER_OPTIONS hand to YNNPACK; GPU and TPU keep the
    single 3D convolution their compilers tile directly. A 1x1x1 kernel is a matmul everywhere."""
    if kernel.shape[:3] == (1, 1, 1):
        return jnp.einsum("bthwc,co->bthwo", x[:, :: stride[0], :: stride[1], :: stride[2]], kernel[0, 0, 0])
    if _ACCELERATOR_FORM.get():
        return _conv3d_direct(x, kernel, stride)
    return jax.lax.platform_dependent(x, kernel, cpu=lambda x, k: _conv3d_frame_taps(x, k, stride),
                                      default=lambda x, k: _conv3d_direct(x, k, stride))


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

    def __call__(self, x: jax.Array) -> jax.Array:
        y = conv3d(x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.stride)
        # output in the compute dtype (the kernels accumulate in float32 anyway): in bf16 a
        # float32 output would double the size of every full-resolution activation
        return y + self.bias[...].astype(self.dtype)


class CausalConv3d(nnx.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int | Sequence[int] = 1, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.pad = kernel_size // 2
        self.time_pad = kernel_size - 1
        self.conv = Conv3d(in_channels, out_channels, kernel_size, stride=stride, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.pad
        x = jnp.pad(x, ((0, 0), (self.time_pad, 0), (p, p), (p, p), (0, 0)), mode="edge")
        return self.conv(x)
