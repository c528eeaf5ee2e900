"""The SDXL VAE Hunyuan-DiT decodes with (sdxl-vae-fp16-fix, diffusers' AutoencoderKL):
image (B, 8h, 8w, 3) in [-1, 1] <-> latent (B, h, w, 4), channels-last.

Encoder: conv_in, down blocks (resnets, then a stride-2 conv in all but the last), mid block
(resnet, single-head attention, resnet), GroupNorm, SiLU, conv_out to 2 x latent channels,
quant_conv -> posterior (mean, logvar). Decoder: post_quant_conv, conv_in, mid block, up
blocks (one more resnet each, nearest 2x upsampling in all but the last), GroupNorm, SiLU,
conv_out. The pipeline divides latents by `scaling_factor` before decoding.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.hunyuan_dit.vae_blocks import MidBlock2d, ResnetStage
from hyv_jax.nn.conv2d import Conv2d
from hyv_jax.nn.group_norm import GroupNorm

LOGVAR_RANGE = (-30.0, 20.0)


@dataclasses.dataclass(frozen=True)
class SDXLVAEConfig:
    """Defaults are sdxl-vae-fp16-fix (Hunyuan-DiT's t2i/sdxl-vae-fp16-fix)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2  # encoder; the decoder has one more per block
    norm_groups: int = 32
    norm_eps: float = 1e-6
    scaling_factor: float = 0.13025
    dtype: str = "float32"
    param_dtype: str = "float32"
    attention_impl: str = "xla"

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        bad = [c for c in self.block_out_channels if c % self.norm_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not divisible by norm_groups {self.norm_groups}")

    @property
    def scale(self) -> int:
        """Pixels per latent position along each side."""
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_mapping(cls, values: Mapping) -> "SDXLVAEConfig":
        return from_mapping(cls, values, "vae")


class Encoder(nnx.Module):
    def __init__(self, c: SDXLVAEConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm = dict(groups=c.norm_groups, eps=c.norm_eps)
        channels = c.block_out_channels
        self.conv_in = Conv2d(c.in_channels, channels[0], 3, **kw)
        self.down_blocks = nnx.List([
            ResnetStage(channels[max(i - 1, 0)], ch, c.layers_per_block, "down" if i < len(channels) - 1 else None, **norm, **kw)
            for i, ch in enumerate(channels)
        ])
        self.mid_block = MidBlock2d(channels[-1], **norm, **kw)
        self.conv_norm_out = GroupNorm(channels[-1], c.norm_groups, eps=c.norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.conv_out = Conv2d(channels[-1], 2 * c.latent_channels, 3, **kw)

    def __call__(self, x: jax.Array, impl: str) -> jax.Array:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(self.mid_block(x, impl))))


class Decoder(nnx.Module):
    def __init__(self, c: SDXLVAEConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm = dict(groups=c.norm_groups, eps=c.norm_eps)
        channels = c.block_out_channels[::-1]
        self.conv_in = Conv2d(c.latent_channels, channels[0], 3, **kw)
        self.mid_block = MidBlock2d(channels[0], **norm, **kw)
        self.up_blocks = nnx.List([
            ResnetStage(channels[max(i - 1, 0)], ch, c.layers_per_block + 1, "up" if i < len(channels) - 1 else None, **norm, **kw)
            for i, ch in enumerate(channels)
        ])
        self.conv_norm_out = GroupNorm(channels[-1], c.norm_groups, eps=c.norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.conv_out = Conv2d(channels[-1], c.out_channels, 3, **kw)

    def __call__(self, z: jax.Array, impl: str) -> jax.Array:
        x = self.mid_block(self.conv_in(z), impl)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class SDXLVAE(nnx.Module):
    def __init__(self, config: SDXLVAEConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype), rngs=rngs)
        self.encoder = Encoder(c, **kw)
        self.quant_conv = Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1, **kw)
        self.post_quant_conv = Conv2d(c.latent_channels, c.latent_channels, 1, **kw)
        self.decoder = Decoder(c, **kw)

    def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        """images (B, H, W, 3) in [-1, 1], sides multiples of `config.scale` -> the posterior's
        (mean, logvar), each (B, H/scale, W/scale, latent_channels)."""
        c = self.config
        if images.ndim != 4 or images.shape[-1] != c.in_channels or images.shape[1] % c.scale or images.shape[2] % c.scale:
            raise ValueError(f"images must be (B, H, W, {c.in_channels}) with H, W multiples of {c.scale}, got {images.shape}")
        moments = self.quant_conv(self.encoder(images.astype(jnp.dtype(c.dtype)), c.attention_impl))
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)

    def decode(self, latents: jax.Array) -> jax.Array:
        """latents (B, h, w, latent_channels), already divided by scaling_factor -> images
        (B, h*scale, w*scale, out_channels), about [-1, 1]."""
        c = self.config
        if latents.ndim != 4 or latents.shape[-1] != c.latent_channels:
            raise ValueError(f"latents must be (B, h, w, {c.latent_channels}) channels-last, got {latents.shape}")
        return self.decoder(self.post_quant_conv(latents.astype(jnp.dtype(c.dtype))), c.attention_impl)
