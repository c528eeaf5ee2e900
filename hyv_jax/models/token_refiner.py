"""The token refiner ("single_refiner", upstream `txt_in`): LLM text states -> model width.

Its conditioning is its own timestep embedding of the raw t plus an embedding of the masked
mean of the raw text states. Each block is self-attention + SiLU MLP with gated residuals
(no shift/scale). The mask is used position by position here, unlike the main blocks.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.mlp import MLP, MLPEmbedder
from hyv_jax.nn.modulation import Modulation
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.stack import scan_layers, stack_layers
from hyv_jax.nn.timestep import TimestepEmbedder


class RefinerBlock(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.heads = heads
        self.norm1 = LayerNorm(dim, eps=1e-6, param_dtype=param_dtype, rngs=rngs)
        self.self_attn_qkv = Dense(dim, (3, heads, dim // heads), in_axes=("embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.self_attn_proj = Dense((heads, dim // heads), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)
        self.norm2 = LayerNorm(dim, eps=1e-6, param_dtype=param_dtype, rngs=rngs)
        self.mlp = MLP(dim, int(dim * mlp_ratio), "silu", **kw)
        self.adaLN_modulation = Modulation(dim, 2, **kw)

    def __call__(self, x: jax.Array, c: jax.Array, valid: jax.Array, key_mask: jax.Array, attn_impl: str) -> jax.Array:
        gate_msa, gate_mlp = self.adaLN_modulation(c)
        qkv = self.self_attn_qkv(self.norm1(x))
        attn = attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], kv_mask=key_mask, impl=attn_impl)
        # Upstream masks queries too: a masked query sees key 0 alone, so its output is v_0. This
        # matters where masked positions are later used (HunyuanCustom's LLaVA mask layout).
        attn = jnp.where(valid[:, :, None, None], attn, qkv[:, :1, 2])
        x = x + gate_msa * self.self_attn_proj(attn)
        return x + gate_mlp * self.mlp(self.norm2(x))


class TokenRefiner(nnx.Module):
    def __init__(self, text_dim: int, dim: int, heads: int, depth: int, mlp_ratio: float, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_embedder = Dense(text_dim, dim, in_axes=("text_embed",), out_axes=("embed",), **kw)
        self.t_embedder = TimestepEmbedder(dim, **kw)
        self.c_embedder = MLPEmbedder(text_dim, dim, in_axis="text_embed", **kw)
        self.blocks = stack_layers(
            lambda r: RefinerBlock(dim, heads, mlp_ratio, dtype=dtype, param_dtype=param_dtype, rngs=r), depth, rngs
        )

    def __call__(self, text_states: jax.Array, t: jax.Array, text_mask: jax.Array, attn_impl: str) -> jax.Array:
        """text_states (B, L, text_dim), t (B,), text_mask (B, L) -> (B, L, dim)."""
        mask = text_mask.astype(jnp.float32)[..., None]
        pooled = jnp.sum(text_states.astype(jnp.float32) * mask, axis=1) / jnp.sum(mask, axis=1)
        c = self.t_embedder(t) + self.c_embedder(pooled.astype(text_states.dtype))
        x = self.input_embedder(text_states)
        valid = jnp.asarray(text_mask, bool)
        # Key 0 always stays valid so that a fully padded row has something to attend to.
        key_mask = valid.at[:, 0].set(True)
        return scan_layers(self.blocks, x, lambda block, h: block(h, c, valid, key_mask, attn_impl))
