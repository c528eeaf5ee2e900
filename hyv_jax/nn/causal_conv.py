"""3D convolutions over channels-last video (B, T, H, W, C).

`Conv3d` is a plain valid convolution with a (kt, kh, kw, in, out) kernel; `CausalConv3d`
wraps one (as `.conv`, the upstream module path) after padding time with k-1 copies of the
first frame in front and space by replication, so frame t never sees frames after t and a
single frame encodes the same alone as at the start of a video.
"""

import contextlib
import contextvars
import functools
import math
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


def _winograd_in(d0, d1, d2, d3):
    """B^T d of Winograd's F(2, 3) along one axis: 4 overlapping inputs -> 4 transformed points."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _winograd_out(m0, m1, m2, m3):
    """A^T m of F(2, 3): 4 products -> 2 outputs."""
    return m0 + m1 + m2, m1 - m2 - m3


@functools.partial(jax.jit, static_argnums=2)  # traced once per shape: a decoder repeats its shapes
def _conv3d_winograd(x: jax.Array, kernel: jax.Array, time_stride: int) -> jax.Array:
    """A (kt, 3, 3) kernel with space stride 1 as Winograd's F(2x2, 3x3) over (H, W): every 2x2
    output block is 16 products of transformed 4x4 input tiles with the transformed kernel, so
    the multiplies per output drop from 9 to 4 per time tap, and those products are plain
    matmuls over channels, one per transformed point and time tap (time taps summed in the
    transformed domain). The 16 points stay separate arrays: stacking them cost a third of the
    time on XLA:CPU (bench/conv3d_forms.py). The transforms only add, subtract and halve, so
    float32 results stay within ~1e-6 of the direct convolution."""
    b, t, h, w, c = x.shape
    kt = kernel.shape[0]
    frames, ho, wo = (t - kt) // time_stride + 1, h - 2, w - 2
    nh, nw = -(-ho // 2), -(-wo // 2)  # output blocks; odd sizes padded, then cropped
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 2 * nh + 2 - h), (0, 2 * nw + 2 - w), (0, 0)))
    rows = _winograd_in(*(x[:, :, i:i + 2 * nh:2] for i in range(4)))
    tiles = [v for r in rows for v in _winograd_in(*(r[:, :, :, j:j + 2 * nw:2] for j in range(4)))]  # point 4a + b
    g = jnp.asarray([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], kernel.dtype)
    u = jnp.einsum("ai,tijco,bj->abtco", g, kernel, g).reshape(16, kt, c, -1)
    products = [sum(jax.lax.slice_in_dim(tile, tap, tap + time_stride * (frames - 1) + 1, time_stride, axis=1) @ u[p, tap]
                    for tap in range(kt))
                for p, tile in enumerate(tiles)]
    columns = [_winograd_out(*(products[4 * a + col] for a in range(4))) for col in range(4)]
    blocks = [_winograd_out(*(columns[col][i] for col in range(4))) for i in range(2)]  # blocks[i][j]: output (2r+i, 2s+j)
    y = jnp.stack([jnp.stack(row, axis=-2) for row in blocks], axis=3)  # (b, frames, nh, 2, nw, 2, co)
    return y.reshape(b, frames, 2 * nh, 2 * nw, -1)[:, :, :ho, :wo]


# Below this many multiply-adds (~10 ms of CPU work) a convolution keeps the per-tap form: the
# Winograd form is ~250 operations to trace and lower, which a small VAE (the tiny default's)
# paid on every run for nothing.
WINOGRAD_MIN_MACS = 2**30


def _conv3d_cpu(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int]) -> jax.Array:
    b, t, h, w, c = x.shape
    frames = (t - kernel.shape[0]) // stride[0] + 1
    macs = b * frames * (h - 2) * (w - 2) * math.prod(kernel.shape[:3]) * c * kernel.shape[-1]
    if kernel.shape[1:3] == (3, 3) and stride[1:] == (1, 1) and macs >= WINOGRAD_MIN_MACS:
        return _conv3d_winograd(x, kernel, stride[0])
    return _conv3d_frame_taps(x, kernel, stride)


def conv3d(x: jax.Array, kernel: jax.Array, stride: tuple[int, int, int] = (1, 1, 1)) -> jax.Array:
    """Valid 3D convolution, NDHWC x DHWIO -> NDHWC, formulated per backend (chosen when the
    program is lowered): on CPU XLA's 3D convolution is several times slower than torch's at
    the VAE's shapes (bench/conv3d_forms.py), so there large 3x3 kernels run as Winograd
    F(2x2, 3x3) matmuls and small or strided ones as 2D convolutions per time tap; GPU and TPU
    keep the single 3D convolution their compilers tile directly. A 1x1x1 kernel is a matmul everywhere."""
    if kernel.shape[:3] == (1, 1, 1):
        return jnp.einsum("bthwc,co->bthwo", x[:, :: stride[0], :: stride[1], :: stride[2]], kernel[0, 0, 0])
    if _ACCELERATOR_FORM.get():
        return _conv3d_direct(x, kernel, stride)
    return jax.lax.platform_dependent(x, kernel, cpu=lambda x, k: _conv3d_cpu(x, k, stride),
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
