"""The Hunyuan-DiT block (hydit/modules/models.py:HunYuanDiTBlock, attn_layers.py):

    [x = skip_linear(skip_norm([x, skip]))]            blocks of the second half only
    x = x + attn1(norm1(x) + default_modulation(c))    self-attention, shift-only adaLN
    x = x + attn2(norm3(x), text)                      cross-attention to CLIP + mT5 tokens
    x = x + mlp(norm2(x))                              GELU (tanh) MLP

Query and key are LayerNormed per head, then rotated by the 2D image RoPE; in the
cross-attention only the (image) queries are rotated. The text keys are not masked: padded
text positions hold the learned padding tokens instead (see transformer.py). Attribute names
are upstream's (norm2 is the MLP's norm, norm3 the cross-attention's; diffusers swaps them).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.mlp import MLP
from hyv_jax.nn.modulation import Modulation
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.rope import apply_rope


def _head_norm(head_dim: int, param_dtype, rngs) -> LayerNorm:
    return LayerNorm(head_dim, eps=1e-6, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)


class SelfAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head_dim = dim // heads
        self.Wqkv = Dense(dim, (3, heads, head_dim), in_axes=("embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.q_norm = _head_norm(head_dim, param_dtype, rngs)
        self.k_norm = _head_norm(head_dim, param_dtype, rngs)
        self.out_proj = Dense((heads, head_dim), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)

    def __call__(self, x: jax.Array, rope: tuple[jax.Array, jax.Array], impl: str) -> jax.Array:
        qkv = self.Wqkv(x)
        q = apply_rope(self.q_norm(qkv[:, :, 0]), *rope)
        k = apply_rope(self.k_norm(qkv[:, :, 1]), *rope)
        return self.out_proj(attention(q, k, qkv[:, :, 2], impl=impl))


class CrossAttention(nnx.Module):
    def __init__(self, dim: int, text_dim: int, heads: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head_dim = dim // heads
        self.q_proj = Dense(dim, (heads, head_dim), in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.kv_proj = Dense(text_dim, (2, heads, head_dim), in_axes=("text_embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.q_norm = _head_norm(head_dim, param_dtype, rngs)
        self.k_norm = _head_norm(head_dim, param_dtype, rngs)
        self.out_proj = Dense((heads, head_dim), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)

    def __call__(self, x: jax.Array, text: jax.Array, rope: tuple[jax.Array, jax.Array], impl: str) -> jax.Array:
        kv = self.kv_proj(text)
        q = apply_rope(self.q_norm(self.q_proj(x)), *rope)
        return self.out_proj(attention(q, self.k_norm(kv[:, :, 0]), kv[:, :, 1], impl=impl))


class HunyuanDiTBlock(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_hidden: int, text_dim: int, *, skip: bool, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm = dict(eps=1e-6, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = LayerNorm(dim, **norm)
        self.attn1 = SelfAttention(dim, heads, **kw)
        self.norm2 = LayerNorm(dim, **norm)
        self.mlp = MLP(dim, mlp_hidden, "gelu_tanh", **kw)
        self.default_modulation = Modulation(dim, 1, **kw)
        self.attn2 = CrossAttention(dim, text_dim, heads, **kw)
        self.norm3 = LayerNorm(dim, **norm)
        if skip:
            self.skip_norm = LayerNorm(2 * dim, **norm)
            self.skip_linear = Dense(2 * dim, dim, in_axes=("embed",), out_axes=("embed",), **kw)
        else:
            self.skip_norm = self.skip_linear = None

    def __call__(self, x: jax.Array, c: jax.Array, text: jax.Array, rope, impl: str, skip: jax.Array | None = None) -> jax.Array:
        if self.skip_linear is not None:
            x = self.skip_linear(self.skip_norm(jnp.concatenate([x, skip], axis=-1)))
        (shift,) = self.default_modulation(c)
        x = x + self.attn1(self.norm1(x) + shift, rope, impl)
        x = x + self.attn2(self.norm3(x), text, rope, impl)
        return x + self.mlp(self.norm2(x))
