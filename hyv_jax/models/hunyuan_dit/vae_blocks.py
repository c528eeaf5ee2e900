"""Building blocks of the SDXL 2D VAE (diffusers' AutoencoderKL parts), channels-last
(B, H, W, C). Attribute names follow diffusers (`resnets`, `downsamplers.0.conv`,
`attentions.0`, `to_out.0`, ...) so the conversion table reads against the checkpoint."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.models.vae_blocks import MidAttention, ResnetBlock
from hyv_jax.nn.conv2d import Conv2d


def resnet_2d(in_channels: int, out_channels: int, **kw) -> ResnetBlock:
    """diffusers' ResnetBlock2D without a time embedding (the VAE's resnet over 2D convs)."""
    return ResnetBlock(in_channels, out_channels, conv=Conv2d, **kw)


class Attention2d(MidAttention):
    """GroupNorm, one head over all h*w positions (no mask), output projection, residual: the
    video VAE's mid attention without its frame-causal mask."""

    def __call__(self, x: jax.Array, impl: str) -> jax.Array:
        b, h, w, c = x.shape
        tokens = self.group_norm(x).reshape(b, h * w, 1, c)
        out = attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens), impl=impl)
        return x + self.to_out[0](out.reshape(b, h, w, c))


class MidBlock2d(nnx.Module):
    def __init__(self, channels: int, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(groups=groups, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attentions = nnx.List([Attention2d(channels, **kw)])
        self.resnets = nnx.List([resnet_2d(channels, channels, **kw), resnet_2d(channels, channels, **kw)])

    def __call__(self, x: jax.Array, impl: str) -> jax.Array:
        return self.resnets[1](self.attentions[0](self.resnets[0](x), impl))


class Downsample2d(nnx.Module):
    """A stride-2 3x3 conv after padding right and bottom by one (diffusers' Downsample2D)."""

    def __init__(self, channels: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.conv = Conv2d(channels, channels, 3, stride=2, padding=((0, 1), (0, 1)), dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample2d(nnx.Module):
    """Nearest 2x upsampling, then a 3x3 conv."""

    def __init__(self, channels: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.conv = Conv2d(channels, channels, 3, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class ResnetStage(nnx.Module):
    """`layers` resnets, then an optional resampler: an encoder down block (`downsamplers`) or
    a decoder up block (`upsamplers`)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, resample: str | None, *, groups: int, eps: float,
                 dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List([
            resnet_2d(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps, **kw) for i in range(layers)
        ])
        self.downsamplers = nnx.List([Downsample2d(out_channels, **kw)]) if resample == "down" else None
        self.upsamplers = nnx.List([Upsample2d(out_channels, **kw)]) if resample == "up" else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x if self.upsamplers is None else self.upsamplers[0](x)
