"""Attention pooling of the mT5 states into one vector (hydit/modules/poolers.py, from CLIP's
ResNet head): the mean token is prepended, learned positions are added, and the mean token
alone queries all tokens with multi-head attention; c_proj maps to the output width. Every
position counts, padding included (upstream pools the raw, unmasked states)."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.params import make_param


def _scaled_normal(key, shape, dtype):
    return (jax.random.normal(key, shape, jnp.float32) / shape[-1] ** 0.5).astype(dtype)


class AttentionPool(nnx.Module):
    def __init__(self, length: int, dim: int, heads: int, out_dim: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head = (heads, dim // heads)
        proj = dict(in_axes=("text_embed",), out_axes=("heads", "head_dim"), **kw)
        self.length = length
        self.positional_embedding = make_param(rngs, _scaled_normal, (length + 1, dim), ("positions", "text_embed"), param_dtype)
        self.q_proj = Dense(dim, head, **proj)
        self.k_proj = Dense(dim, head, **proj)
        self.v_proj = Dense(dim, head, **proj)
        self.c_proj = Dense(head, out_dim, in_axes=("heads", "head_dim"), out_axes=("pooled_embed",), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x (B, length, dim) -> (B, out_dim)."""
        if x.shape[1] != self.length:
            raise ValueError(f"the attention pool takes {self.length} tokens (its positions), got {x.shape[1]}")
        x = jnp.concatenate([jnp.mean(x.astype(jnp.float32), axis=1, keepdims=True).astype(x.dtype), x], axis=1)
        x = x + self.positional_embedding[...].astype(x.dtype)[None]
        out = attention(self.q_proj(x[:, :1]), self.k_proj(x), self.v_proj(x), impl="xla")
        return self.c_proj(out)[:, 0]
