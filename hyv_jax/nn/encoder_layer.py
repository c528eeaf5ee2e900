"""The transformer encoder layer of CLIP (text and vision) and Whisper, pre-LayerNorm:
x + attn(LN(x)), then x + MLP(LN(x)); and of BERT, post-LayerNorm (`post_norm`):
LN(x + attn(x)), then LN(x + MLP(x)). Separate q/k/v/out projections (the checkpoints keep
them apart). The attention is bidirectional unless the caller passes another (CLIP text's is
causal over right-padded tokens)."""

from collections.abc import Callable

import jax
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.mlp import MLP
from hyv_jax.nn.norms import LayerNorm


class EncoderLayer(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, act: str, *, eps: float, k_bias: bool = True, post_norm: bool = False,
                 dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_norm = post_norm
        head = (heads, dim // heads)
        proj = dict(in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.norm1 = LayerNorm(dim, eps=eps, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Dense(dim, head, **proj)
        self.k_proj = Dense(dim, head, use_bias=k_bias, **proj)
        self.v_proj = Dense(dim, head, **proj)
        self.out_proj = Dense(head, dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)
        self.norm2 = LayerNorm(dim, eps=eps, param_dtype=param_dtype, rngs=rngs)
        self.mlp = MLP(dim, mlp_dim, act, **kw)

    def __call__(self, x: jax.Array, attend: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] = attention) -> jax.Array:
        if self.post_norm:
            x = self.norm1(x + self.out_proj(attend(self.q_proj(x), self.k_proj(x), self.v_proj(x))))
            return self.norm2(x + self.mlp(x))
        h = self.norm1(x)
        x = x + self.out_proj(attend(self.q_proj(h), self.k_proj(h), self.v_proj(h)))
        return x + self.mlp(self.norm2(x))
