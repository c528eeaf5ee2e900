"""3D convolutions over channels-last video (B, T, H, W, C).

`Conv3d` is a plain valid convolution with a (kt, kh, kw, in, out) kernel; `CausalConv3d`
wraps one (as `.conv`, the upstream module path) after padding time with k-1 copies of the
first frame in front and space by replication, so frame t never sees frames after t and a
single frame encodes the same alone as at the start of a video.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import fan_in_normal, make_param, zeros

CONV_AXES = ("conv_t", "conv_h", "conv_w", "channels", "channels_out")


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


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
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            window_strides=self.stride,
            padding="VALID",
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )
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
