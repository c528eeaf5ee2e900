"""The Whisper audio encoder (transformers' `WhisperEncoder`), returning every hidden state.

log-mel (B, 3000, mels) channels-last -> conv(k3) GELU -> conv(k3, stride 2) GELU -> + learned
positions -> pre-LN transformer layers -> final LayerNorm. HunyuanCustom stacks the states the
way transformers reports them: the input of each layer, then the final normed output
(whisper-tiny: 4 layers -> 5 states of (1500, 384)).
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.encoder_layer import EncoderLayer
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.params import make_param, zeros
from hyv_jax.nn.stack import scan_layers, stack_layers

LAYER_NORM_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class WhisperEncoderConfig:
    """Defaults: whisper-tiny, the one HunyuanCustom uses."""

    mel_bins: int = 80
    dim: int = 384
    heads: int = 6
    layers: int = 4
    ffn_dim: int = 1536
    positions: int = 1500  # output frames: 3000 mel frames / stride 2
    dtype: str = "float32"  # upstream runs the encoder in fp32
    param_dtype: str = "float32"

    @classmethod
    def from_mapping(cls, values: Mapping) -> "WhisperEncoderConfig":
        return from_mapping(cls, values, "whisper")


class Conv1d(nnx.Module):
    """Kernel-3, padding-1 convolution as a Dense over (tap, channels) windows."""

    def __init__(self, in_dim: int, out_dim: int, stride: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.stride = stride
        self.proj = Dense((3, in_dim), out_dim, in_axes=("conv_tap", "audio_channels"), out_axes=("embed",),
                          dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, T, C) -> (B, ceil(T / stride), D)."""
        padded = jnp.pad(x, ((0, 0), (1, 1), (0, 0)))
        n = (x.shape[1] - 1) // self.stride + 1
        taps = [padded[:, k : k + self.stride * (n - 1) + 1 : self.stride] for k in range(3)]
        return self.proj(jnp.stack(taps, axis=2))


class WhisperEncoder(nnx.Module):
    def __init__(self, config: WhisperEncoderConfig, *, rngs: nnx.Rngs):
        c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        self.config = config
        self.conv1 = Conv1d(c.mel_bins, c.dim, 1, **kw, rngs=rngs)
        self.conv2 = Conv1d(c.dim, c.dim, 2, **kw, rngs=rngs)
        # learned (checkpoint) positions; transformers initialises them sinusoidally
        self.embed_positions = make_param(rngs, zeros, (c.positions, c.dim), ("audio_frames", "embed"), kw["param_dtype"])
        self.layers = stack_layers(
            lambda r: EncoderLayer(c.dim, c.heads, c.ffn_dim, "gelu", eps=LAYER_NORM_EPS, k_bias=False, **kw, rngs=r), c.layers, rngs
        )
        self.layer_norm = LayerNorm(c.dim, eps=LAYER_NORM_EPS, param_dtype=kw["param_dtype"], rngs=rngs)

    def __call__(self, mel: jax.Array) -> jax.Array:
        """mel (B, 2 * positions, mel_bins) channels-last -> hidden states (B, positions, layers + 1, dim)."""
        c = self.config
        if mel.ndim != 3 or mel.shape[1:] != (2 * c.positions, c.mel_bins):
            raise ValueError(f"Whisper input must be log-mel features (B, {2 * c.positions}, {c.mel_bins}) channels-last "
                             f"(30 s of 16 kHz audio), got {mel.shape}")
        h = jax.nn.gelu(self.conv1(mel.astype(jnp.dtype(c.dtype))), approximate=False)
        h = jax.nn.gelu(self.conv2(h), approximate=False)
        h = h + self.embed_positions[...].astype(h.dtype)

        def step(layer, carry, i):
            x, states = carry
            return layer(x), states.at[i].set(x)

        states = jnp.zeros((c.layers + 1, *h.shape), h.dtype)
        h, states = scan_layers(self.layers, (h, states), step, xs=jnp.arange(c.layers))
        states = states.at[c.layers].set(self.layer_norm(h))
        return jnp.moveaxis(states, 0, 2)
