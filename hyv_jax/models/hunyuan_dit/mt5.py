"""The mT5 encoder (transformers' `T5EncoderModel` with mT5-XL's config), whose last hidden
state is Hunyuan-DiT's second text input (hydit/modules/text_encoder.py: hidden_states[-1]).

Pre-RMSNorm layers: self-attention without biases or score scaling, plus a bucketed relative
position bias (computed once, by layer 0's table, and shared by every layer), then a gated-GELU
MLP (wi_0, wi_1, wo); a final RMSNorm. Padded keys are masked by position.
"""

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.embedding import Embedding
from hyv_jax.nn.mlp import GatedMLP
from hyv_jax.nn.norms import RMSNorm
from hyv_jax.nn.stack import scan_layers, stack_layers


@dataclasses.dataclass(frozen=True)
class MT5Config:
    """Defaults are google/mt5-xl's encoder (Hunyuan-DiT's t2i/mt5)."""

    vocab_size: int = 250112
    d_model: int = 2048
    d_kv: int = 64
    heads: int = 32
    d_ff: int = 5120
    num_layers: int = 24
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_eps: float = 1e-6
    dense_act: str = "gelu_tanh"  # transformers' gelu_new
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"

    @classmethod
    def from_mapping(cls, values: Mapping) -> "MT5Config":
        return from_mapping(cls, values, "text_encoder.mt5")


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(length, length) bucket of key j for query i, bidirectional, as transformers'
    T5Attention._relative_position_bucket (its float32 log steps)."""
    relative = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).astype(np.int64) * half
    distance = np.abs(relative)
    exact = half // 2
    with np.errstate(divide="ignore"):
        scaled = (np.log(distance.astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_distance / exact))
                  * np.float32(half - exact)).astype(np.float32)
    large = np.minimum(exact + np.where(distance < exact, 0, scaled).astype(np.int64), half - 1)
    return buckets + np.where(distance < exact, distance, large)


class T5Layer(nnx.Module):
    def __init__(self, c: MT5Config, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head = (c.heads, c.d_kv)
        self.norm1 = RMSNorm(c.d_model, eps=c.layer_norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.q = Dense(c.d_model, head, in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.k = Dense(c.d_model, head, in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.v = Dense(c.d_model, head, in_axes=("embed",), out_axes=("heads", "head_dim"), **kw)
        self.o = Dense(head, c.d_model, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)
        self.norm2 = RMSNorm(c.d_model, eps=c.layer_norm_eps, param_dtype=param_dtype, rngs=rngs)
        self.mlp = GatedMLP(c.d_model, c.d_ff, c.dense_act, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x: jax.Array, bias: jax.Array, mask: jax.Array) -> jax.Array:
        h = self.norm1(x)
        # T5 does not scale the scores (its init folds 1/sqrt(d_kv) into q); softmax in float32
        q = self.q(h)
        attn = jax.nn.dot_product_attention(q, self.k(h), self.v(h), bias=bias.astype(q.dtype), mask=mask, scale=1.0,
                                            implementation="xla")
        x = x + self.o(attn)
        return x + self.mlp(self.norm2(x))


class MT5Encoder(nnx.Module):
    def __init__(self, config: MT5Config, *, rngs: nnx.Rngs):
        self.config = c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        self.shared = Embedding(c.vocab_size, c.d_model, **kw, rngs=rngs)
        self.relative_attention_bias = Embedding(c.relative_attention_num_buckets, c.heads, axis_name="buckets", **kw, rngs=rngs)
        self.layers = stack_layers(lambda r: T5Layer(c, **kw, rngs=r), c.num_layers, rngs)
        self.final_layer_norm = RMSNorm(c.d_model, eps=c.layer_norm_eps, param_dtype=kw["param_dtype"], rngs=rngs)

    def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
        """input_ids (B, L) int, mask (B, L) 1 = token, 0 = padding -> the last hidden state
        (B, L, d_model) (after the final norm)."""
        c = self.config
        length = input_ids.shape[1]
        buckets = relative_position_buckets(length, c.relative_attention_num_buckets, c.relative_attention_max_distance)
        bias = jnp.transpose(self.relative_attention_bias(buckets), (2, 0, 1))[None].astype(jnp.float32)  # (1, H, L, L)
        key_mask = jnp.asarray(mask, bool)[:, None, None, :]
        x = scan_layers(self.layers, self.shared(input_ids), lambda layer, h: layer(h, bias, key_mask))
        return self.final_layer_norm(x)
