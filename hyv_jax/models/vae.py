"""HunyuanVideo's causal 3D VAE ("884-16c-hy0801"): video (B, 1+4k, 8h, 8w, 3) in [-1, 1]
<-> latent (B, 1+k, h, w, 16), channels-last.

Encoder: conv_in, down blocks (resnets, then a strided causal conv: space in the first three,
time in the middle two), mid block (resnet, frame-causal attention, resnet), GroupNorm, SiLU,
conv_out to 2 x latent channels, quant_conv -> posterior (mean, logvar). The decoder mirrors it
with one more resnet per block and nearest upsamplers. Everything is causal in time: frame t of
the output depends on frames <= t, and the first frame is coded on its own (an image).
`encode`/`decode` tile large inputs (see vae_tiling); the untiled passes are jit-friendly.
"""

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.vae_blocks import DownBlock, MidBlock, UpBlock
from hyv_jax.models.vae_tiling import TilePlan, Tiles, tiled_apply
from hyv_jax.nn.causal_conv import CPU_COMPILER_OPTIONS, CausalConv3d, Conv3d
from hyv_jax.nn.group_norm import GroupNorm
from hyv_jax.persistent_cache import PersistentProgram

LOGVAR_RANGE = (-30.0, 20.0)


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Defaults are the released 884-16c-hy0801 VAE with upstream's tiling (on)."""

    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 16
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2  # encoder; the decoder has one more per block
    norm_groups: int = 32
    norm_eps: float = 1e-6
    scaling_factor: float = 0.476986
    spatial_ratio: int = 8
    temporal_ratio: int = 4
    # tiling: tiles of `tile_sample_size` px / `tile_sample_frames` (+1) frames in video space,
    # the latent tile follows from the ratios; used only for inputs larger than a tile
    spatial_tiling: bool = True
    temporal_tiling: bool = True
    tile_sample_size: int = 256
    tile_sample_frames: int = 64
    tile_overlap: float = 0.25
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        n = len(self.block_out_channels)
        for name, ratio in (("spatial_ratio", self.spatial_ratio), ("temporal_ratio", self.temporal_ratio)):
            if ratio < 1 or ratio & (ratio - 1) or int(math.log2(ratio)) > n - 1:
                raise ValueError(f"{name} {ratio} must be a power of two reachable with {n - 1} downsampling blocks")
        bad = [c for c in self.block_out_channels if c % self.norm_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not divisible by norm_groups {self.norm_groups}")
        if self.tile_sample_size % self.spatial_ratio or self.tile_sample_frames % self.temporal_ratio:
            raise ValueError(
                f"tile_sample_size {self.tile_sample_size} / tile_sample_frames {self.tile_sample_frames} must be "
                f"multiples of the spatial / temporal ratios {self.spatial_ratio} / {self.temporal_ratio}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping) -> "VAEConfig":
        return from_mapping(cls, values, "VAE")

    def block_strides(self) -> list[tuple[int, int, int] | None]:
        """Per block (encoder order) the downsampling (t, h, w) stride, None for no downsampler:
        space halves in the first log2(spatial_ratio) blocks, time in the log2(temporal_ratio)
        blocks just before the last (upstream's rule), so frame 0 stays alone longest."""
        n, n_s, n_t = len(self.block_out_channels), int(math.log2(self.spatial_ratio)), int(math.log2(self.temporal_ratio))
        strides = []
        for i in range(n):
            s = 2 if i < n_s else 1
            t = 2 if n - 1 - n_t <= i < n - 1 else 1
            strides.append((t, s, s) if (s, t) != (1, 1) else None)
        return strides

    def encode_plan(self, spatial: bool | None = None, temporal: bool | None = None) -> TilePlan:
        """Tiling of the encoder (sample tiles in, latent tiles out); `spatial`/`temporal`
        override the config's switches."""
        return self._plan(spatial, temporal, decode=False)

    def decode_plan(self, spatial: bool | None = None, temporal: bool | None = None) -> TilePlan:
        """Tiling of the decoder (latent tiles in, sample tiles out)."""
        return self._plan(spatial, temporal, decode=True)

    def _plan(self, spatial: bool | None, temporal: bool | None, decode: bool) -> TilePlan:
        def tiles(sample: int, ratio: int, on: bool) -> Tiles | None:
            sizes = (sample // ratio, sample) if decode else (sample, sample // ratio)
            return Tiles.from_overlap(*sizes, self.tile_overlap) if on else None

        return TilePlan(tiles(self.tile_sample_size, self.spatial_ratio, _pick(spatial, self.spatial_tiling)),
                        tiles(self.tile_sample_frames, self.temporal_ratio, _pick(temporal, self.temporal_tiling)))


def _pick(override: bool | None, default: bool) -> bool:
    return default if override is None else override


def _kw(config: VAEConfig, rngs: nnx.Rngs) -> dict:
    return dict(dtype=jnp.dtype(config.dtype), param_dtype=jnp.dtype(config.param_dtype), rngs=rngs)


class Encoder(nnx.Module):
    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        kw, norm = _kw(config, rngs), dict(groups=config.norm_groups, eps=config.norm_eps)
        channels = config.block_out_channels
        self.conv_in = CausalConv3d(config.in_channels, channels[0], 3, **kw)
        self.down_blocks = nnx.List([
            DownBlock(channels[max(i - 1, 0)], c, config.layers_per_block, stride, **norm, **kw)
            for i, (c, stride) in enumerate(zip(channels, config.block_strides(), strict=True))
        ])
        self.mid_block = MidBlock(channels[-1], **norm, **kw)
        self.conv_norm_out = GroupNorm(channels[-1], config.norm_groups, eps=config.norm_eps, param_dtype=kw["param_dtype"], rngs=rngs)
        self.conv_out = CausalConv3d(channels[-1], 2 * config.latent_channels, 3, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nnx.Module):
    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        kw, norm = _kw(config, rngs), dict(groups=config.norm_groups, eps=config.norm_eps)
        channels = config.block_out_channels[::-1]
        factors = config.block_strides()  # upstream applies the encoder's per-index rule unchanged
        self.conv_in = CausalConv3d(config.latent_channels, channels[0], 3, **kw)
        self.mid_block = MidBlock(channels[0], **norm, **kw)
        self.up_blocks = nnx.List([
            UpBlock(channels[max(i - 1, 0)], c, config.layers_per_block + 1, factor, **norm, **kw)
            for i, (c, factor) in enumerate(zip(channels, factors, strict=True))
        ])
        self.conv_norm_out = GroupNorm(channels[-1], config.norm_groups, eps=config.norm_eps, param_dtype=kw["param_dtype"], rngs=rngs)
        self.conv_out = CausalConv3d(channels[-1], config.out_channels, 3, **kw)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(jax.nn.silu(self.conv_norm_out(x)))


class CausalVideoVAE(nnx.Module):
    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        kw = _kw(config, rngs)
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)
        self.quant_conv = Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1, **kw)
        self.post_quant_conv = Conv3d(config.latent_channels, config.latent_channels, 1, **kw)

    # untiled passes: pure, traceable, jit them as a whole or per tile
    def encode_moments(self, video: jax.Array) -> jax.Array:
        """(B, T, H, W, C) video -> (B, T', H', W', 2 x latent) posterior moments [mean | logvar]."""
        return self.quant_conv(self.encoder(video))

    def decode_frames(self, latent: jax.Array) -> jax.Array:
        return self.decoder(self.post_quant_conv(latent))

    # checked entry points, tiled above the tile size as the config says
    def encode(self, video: jax.Array, plan: TilePlan | None = None) -> tuple[jax.Array, jax.Array]:
        """Posterior (mean, logvar) of a (B, 1+4k, H, W, C) video, H and W multiples of 8.
        `plan` overrides the config's tiling (`UNTILED`, or `config.encode_plan(...)`)."""
        self._check_video(video)
        graphdef, state = nnx.split(self)
        moments = tiled_apply(lambda x: ENCODE_TILE(graphdef, state, x), video, self.config.encode_plan() if plan is None else plan)
        return split_moments(moments)

    def decode(self, latent: jax.Array, plan: TilePlan | None = None) -> jax.Array:
        """(B, T, h, w, latent) latent (unscaled: divide sampled latents by the scaling factor
        first) -> (B, 1+4(T-1), 8h, 8w, C) video."""
        self._check_latent(latent)
        graphdef, state = nnx.split(self)
        return tiled_apply(lambda z: DECODE_TILE(graphdef, state, z), latent, self.config.decode_plan() if plan is None else plan)

    def _check_video(self, video: jax.Array) -> None:
        c = self.config
        if video.ndim != 5 or video.shape[-1] != c.in_channels:
            raise ValueError(f"expected a channels-last video (B, T, H, W, {c.in_channels}), got shape {tuple(video.shape)}")
        t, h, w = video.shape[1:4]
        if (t - 1) % c.temporal_ratio:
            raise ValueError(f"the VAE needs 1 + {c.temporal_ratio}k frames (1, 5, ..., 129), got {t}; trim or pad the video")
        if h % c.spatial_ratio or w % c.spatial_ratio:
            raise ValueError(f"height and width must be multiples of {c.spatial_ratio}, got {h}x{w}; resize or crop the video")

    def _check_latent(self, latent: jax.Array) -> None:
        c = self.config.latent_channels
        if latent.ndim != 5 or latent.shape[-1] != c or latent.shape[1] < 1:
            raise ValueError(f"expected a channels-last latent (B, T, h, w, {c}), got shape {tuple(latent.shape)}")


def _encode_moments(graphdef: nnx.GraphDef, state: nnx.State, video: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).encode_moments(video)


def _decode_frames(graphdef: nnx.GraphDef, state: nnx.State, latent: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, state).decode_frames(latent)


# jitted over the split state, one program per tile shape, kept across processes; on CPU their
# convolutions run in YNNPACK (nn/causal_conv.py)
ENCODE_TILE = PersistentProgram(_encode_moments, "vae_encode", static_argnums=(0,), compiler_options={"cpu": CPU_COMPILER_OPTIONS})
DECODE_TILE = PersistentProgram(_decode_frames, "vae_decode", static_argnums=(0,), compiler_options={"cpu": CPU_COMPILER_OPTIONS})


def split_moments(moments: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return mean, jnp.clip(logvar, *LOGVAR_RANGE)


def sample_posterior(mean: jax.Array, logvar: jax.Array, rng: jax.Array) -> jax.Array:
    """mean + std * N(0, 1) (the mean itself is the posterior's mode), in the moments' dtype as
    upstream (hyvideo/vae/vae.py:313-322): float32 normals rounded to it, as torch's CUDA
    generator draws a half tensor (normals drawn in fp16 take ~1000 values, |x| <= 3.5)."""
    noise = jax.random.normal(rng, mean.shape, jnp.float32).astype(mean.dtype)
    return mean + jnp.exp(0.5 * logvar.astype(mean.dtype)) * noise
