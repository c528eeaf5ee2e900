"""The Llama decoder of LLaVA-Llama-3 (the HunyuanVideo text encoder), up to a chosen layer.

HunyuanVideo reads `hidden_states[-3]` of the 32-layer model: the output of decoder layer 30,
without the final norm. The model here is built with exactly `output_layer` decoder layers, so
the skipped ones are neither stored nor run; with `output_layer == num_layers` it appends the
final RMSNorm (transformers' last hidden state). Grouped-query attention, RoPE with
rotate-half pairs (theta and Llama-3 `rope_scaling` from the config), RMSNorm, SwiGLU MLP.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.text.causal_attention import causal_attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.embedding import Embedding
from hyv_jax.nn.mlp import GatedMLP
from hyv_jax.nn.norms import RMSNorm
from hyv_jax.nn.stack import scan_layers, stack_layers

ROPE_SCALING_KEYS = ("factor", "high_freq_factor", "low_freq_factor", "original_max_position_embeddings", "rope_type")


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Defaults are the language model of llava-llama-3-8b-v1_1 as HunyuanVideo uses it."""

    vocab_size: int = 128320
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_layers: int = 32  # decoder layers of the checkpoint
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 500000.0
    # transformers' `rope_scaling` of Llama-3.1-style checkpoints ({"rope_type": "llama3", ...});
    # None for Llama-3 (llava-llama-3-8b-v1_1 has none)
    rope_scaling: tuple | None = None
    rms_norm_eps: float = 1e-5
    # hidden state after this many decoder layers (= transformers' hidden_states[output_layer])
    output_layer: int = 30
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"

    def __post_init__(self):
        if self.rope_scaling is not None:
            # hashable and JSON-friendly: sorted (key, value) pairs
            items = self.rope_scaling.items() if hasattr(self.rope_scaling, "items") else self.rope_scaling
            scaling = tuple(sorted((str(k), v) for k, v in items))
            object.__setattr__(self, "rope_scaling", scaling)
            kind = dict(scaling).get("rope_type", dict(scaling).get("type"))
            if kind != "llama3":
                raise ValueError(f"rope_scaling {dict(scaling)} is not supported; only rope_type 'llama3' (or None) is")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} must be a multiple of kv_heads {self.kv_heads}")
        if not 1 <= self.output_layer <= self.num_layers:
            raise ValueError(f"output_layer must be in 1..num_layers ({self.num_layers}), got {self.output_layer}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> "LlamaConfig":
        return from_mapping(cls, values, "text_encoder.llm")


def rope_inverse_frequencies(config: LlamaConfig) -> np.ndarray:
    """transformers' inverse frequencies (float32, each step as torch rounds it), with the
    Llama-3 long-context rescaling when the config has `rope_scaling`."""
    f32 = np.float32
    exponent = np.arange(0, config.head_dim, 2).astype(f32) / f32(config.head_dim)
    inv = f32(1.0) / np.power(np.float64(config.rope_theta), exponent.astype(np.float64)).astype(f32)
    if config.rope_scaling is None:
        return inv
    s = dict(config.rope_scaling)
    factor, low, high = f32(s["factor"]), f32(s["low_freq_factor"]), f32(s["high_freq_factor"])
    old_len = f32(s["original_max_position_embeddings"])
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = f32(2 * np.pi) / inv
    scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (f32(1) - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return np.where(medium, smoothed, scaled).astype(f32)


def rope_tables(config: LlamaConfig, length: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin (length, head_dim) for positions 0..length-1, halves layout [f | f]."""
    angles = np.arange(length, dtype=np.float32)[:, None] * rope_inverse_frequencies(config)[None]
    angles = np.concatenate([angles, angles], axis=-1).astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def rope_tables_at(config: LlamaConfig, positions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos, sin (B, L, head_dim) for per-token positions (B, L), in float32 as transformers."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(rope_inverse_frequencies(config))
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x (B, L, heads, head_dim) rotated in pairs (i, i + head_dim/2), in x's dtype (as upstream);
    cos/sin (L, head_dim) shared by the batch or (B, L, head_dim) per sample."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos.astype(x.dtype)[..., None, :], sin.astype(x.dtype)[..., None, :]
    return x * cos + rotated * sin


class LlamaAttention(nnx.Module):
    def __init__(self, c: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        # kv heads shard on the same mesh axis as query heads: head h reads kv head h // group
        self.q_proj = Dense(c.hidden_size, (c.heads, c.head_dim), in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.k_proj = Dense(c.hidden_size, (c.kv_heads, c.head_dim), in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.v_proj = Dense(c.hidden_size, (c.kv_heads, c.head_dim), in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.o_proj = Dense((c.heads, c.head_dim), c.hidden_size, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, key_mask: jax.Array) -> jax.Array:
        q = apply_rotary(self.q_proj(x), cos, sin)
        k = apply_rotary(self.k_proj(x), cos, sin)
        return self.o_proj(causal_attention(q, k, self.v_proj(x), key_mask))


class LlamaDecoderLayer(nnx.Module):
    def __init__(self, c: LlamaConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_layernorm = RMSNorm(c.hidden_size, eps=c.rms_norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.self_attn = LlamaAttention(c, **kw)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, eps=c.rms_norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.mlp = GatedMLP(c.hidden_size, c.intermediate_size, "silu", **kw)  # SwiGLU

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, key_mask: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, key_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nnx.Module):
    def __init__(self, config: LlamaConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
        self.embed_tokens = Embedding(c.vocab_size, c.hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.layers = stack_layers(
            lambda r: LlamaDecoderLayer(c, dtype=dtype, param_dtype=param_dtype, rngs=r), c.output_layer, rngs
        )
        last = c.output_layer == c.num_layers
        self.norm = RMSNorm(c.hidden_size, eps=c.rms_norm_eps, param_dtype=param_dtype, rngs=rngs) if last else None

    def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
        """input_ids (B, L) int, mask (B, L) 1 = token, 0 = right padding -> the hidden state
        (B, L, hidden_size) after `output_layer` decoder layers."""
        return self.from_embeddings(self.embed_tokens(input_ids), mask)

    def from_embeddings(self, x: jax.Array, mask: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """The decoder on input embeddings x (B, L, hidden_size), e.g. text with LLaVA's image
        embeddings spliced in; positions (B, L) the RoPE positions, None for 0..L-1."""
        if positions is None:
            cos, sin = rope_tables(self.config, x.shape[1])
        else:
            cos, sin = rope_tables_at(self.config, positions)
        x = scan_layers(self.layers, x, lambda layer, h: layer(h, cos, sin, mask))
        return self.norm(x) if self.norm is not None else x
