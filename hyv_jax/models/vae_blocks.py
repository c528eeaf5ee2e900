"""Building blocks of the causal 3D VAE, channels-last (B, T, H, W, C).

Attribute names follow the upstream modules (`resnets`, `downsamplers.0.conv`, `attentions.0`,
`to_out.0`, ...) so the conversion table reads line by line against the checkpoint.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.causal_conv import CausalConv3d
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.group_norm import GroupNorm
from hyv_jax.nn.upsampled_conv import upsampled_causal_conv3d


class ResnetBlock(nnx.Module):
    """norm1, SiLU, conv1, norm2, SiLU, conv2, plus the input (through a k=1 conv when the
    channel count changes). `conv` builds the convolutions: causal 3D here, Conv2d for the
    image VAE (models/hunyuan_dit)."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs,
                 conv: Callable = CausalConv3d):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = GroupNorm(in_channels, groups, eps=eps, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = conv(in_channels, out_channels, 3, **kw)
        self.norm2 = GroupNorm(out_channels, groups, eps=eps, param_dtype=param_dtype, rngs=rngs)
        self.conv2 = conv(out_channels, out_channels, 3, **kw)
        self.conv_shortcut = conv(in_channels, out_channels, 1, **kw) if in_channels != out_channels else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample(nnx.Module):
    """A stride (st, 2, 2) causal conv: T -> 1 + (T-1)//st, so frame 0 stays a frame of its own."""

    def __init__(self, channels: int, stride: tuple[int, int, int], *, dtype, param_dtype, rngs: nnx.Rngs):
        self.conv = CausalConv3d(channels, channels, 3, stride=stride, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample(nnx.Module):
    """Nearest upsampling by `factor` (ft, fh, fw), then a causal conv. The first frame is only
    upsampled in space, so T -> 1 + ft(T-1): the inverse of the causal downsampler. Computed in
    one (nn/upsampled_conv.py): on CPU without materialising the upsampled video."""

    def __init__(self, channels: int, factor: tuple[int, int, int], *, dtype, param_dtype, rngs: nnx.Rngs):
        self.factor = tuple(factor)
        self.conv = CausalConv3d(channels, channels, 3, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv.conv.apply(lambda x, k: upsampled_causal_conv3d(x, k, self.factor), x)


def frame_causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, frame_tokens: int) -> jax.Array:
    """Single-head attention over (B, L, C) tokens laid out frame by frame (`frame_tokens` per
    frame): a token of frame i attends to every token of frames <= i. Softmax in float32."""
    frame = jnp.arange(q.shape[1]) // frame_tokens
    logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=jnp.float32) * q.shape[-1] ** -0.5
    logits = jnp.where(frame[None, :, None] >= frame[None, None, :], logits, -jnp.inf)
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bqk,bkc->bqc", probs.astype(v.dtype), v, preferred_element_type=jnp.float32).astype(q.dtype)


class MidAttention(nnx.Module):
    """GroupNorm, one head over all (t, h, w) tokens with the frame-causal mask, residual."""

    def __init__(self, channels: int, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        dense = dict(in_axes=("channels",), out_axes=("channels_out",), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.group_norm = GroupNorm(channels, groups, eps=eps, param_dtype=param_dtype, rngs=rngs)
        self.to_q = Dense(channels, channels, **dense)
        self.to_k = Dense(channels, channels, **dense)
        self.to_v = Dense(channels, channels, **dense)
        self.to_out = nnx.List([Dense(channels, channels, **dense)])

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        tokens = self.group_norm(x).reshape(b, t * h * w, c)
        out = frame_causal_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens), h * w)
        return x + self.to_out[0](out).reshape(x.shape)


class MidBlock(nnx.Module):
    """resnet, attention, resnet at the lowest resolution."""

    def __init__(self, channels: int, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(groups=groups, eps=eps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.attentions = nnx.List([MidAttention(channels, **kw)])
        self.resnets = nnx.List([ResnetBlock(channels, channels, **kw), ResnetBlock(channels, channels, **kw)])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.resnets[0](x)
        return self.resnets[1](self.attentions[0](x))


class DownBlock(nnx.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, stride: tuple[int, int, int] | None, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List([
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps, **kw) for i in range(layers)
        ])
        self.downsamplers = nnx.List([Downsample(out_channels, stride, **kw)]) if stride else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class UpBlock(nnx.Module):
    def __init__(self, in_channels: int, out_channels: int, layers: int, factor: Sequence[int] | None, *, groups: int, eps: float, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.resnets = nnx.List([
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps, **kw) for i in range(layers)
        ])
        self.upsamplers = nnx.List([Upsample(out_channels, factor, **kw)]) if factor else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for resnet in self.resnets:
            x = resnet(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x
