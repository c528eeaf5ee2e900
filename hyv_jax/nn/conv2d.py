"""A 2D convolution over channels-last images (B, H, W, C), kernel (kh, kw, in, out)."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import fan_in_normal, make_param, zeros

CONV2D_AXES = ("conv_h", "conv_w", "channels", "channels_out")


class Conv2d(nnx.Module):
    """Stride and explicit (top, bottom), (left, right) zero padding as torch's Conv2d with
    `padding=k//2` (the default) or any other pads (diffusers' downsampler pads (0, 1))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: Sequence[tuple[int, int]] | None = None, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.stride = stride
        self.padding = tuple(padding) if padding is not None else ((kernel_size // 2,) * 2,) * 2
        self.dtype = dtype
        self.kernel = make_param(rngs, fan_in_normal(3), (kernel_size, kernel_size, in_channels, out_channels), CONV2D_AXES, param_dtype)
        self.bias = make_param(rngs, zeros, (out_channels,), ("channels_out",), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), self.kernel[...].astype(self.dtype), window_strides=(self.stride, self.stride),
            padding=self.padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...].astype(self.dtype)
