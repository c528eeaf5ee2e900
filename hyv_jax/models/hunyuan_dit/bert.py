"""Hunyuan-DiT's bilingual "CLIP" text encoder: a BERT (transformers' `BertModel`, loaded
without its pooler, hydit/inference.py: BertModel.from_pretrained(path, False)), whose last
hidden state is the transformer's CLIP text input.

Word + position + token-type (type 0) embeddings, LayerNorm; post-LayerNorm encoder layers
with bidirectional attention over the valid (unpadded) tokens and an exact-GELU MLP.
"""

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.config_dataclass import from_mapping
from hyv_jax.nn.embedding import Embedding
from hyv_jax.nn.encoder_layer import EncoderLayer
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.stack import scan_layers, stack_layers


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Defaults are Hunyuan-DiT's t2i/clip_text_encoder (a RoBERTa-wwm-ext-large-sized BERT)."""

    vocab_size: int = 47020
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_layers: int = 24
    heads: int = 16
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"
    attention_impl: str = "xla"

    def __post_init__(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> "BertConfig":
        return from_mapping(cls, values, "text_encoder.bert")


class BertEmbeddings(nnx.Module):
    def __init__(self, c: BertConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.word_embeddings = Embedding(c.vocab_size, c.hidden_size, **kw)
        self.position_embeddings = Embedding(c.max_positions, c.hidden_size, axis_name="positions", **kw)
        self.token_type_embeddings = Embedding(c.type_vocab_size, c.hidden_size, axis_name="token_types", **kw)
        self.LayerNorm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        positions = jnp.arange(input_ids.shape[1])
        # token type 0 everywhere: the pipelines pass no token_type_ids
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(jnp.zeros_like(input_ids))
        return self.LayerNorm(x + self.position_embeddings(positions)[None])


class BertModel(nnx.Module):
    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        self.embeddings = BertEmbeddings(c, **kw, rngs=rngs)
        self.layers = stack_layers(
            lambda r: EncoderLayer(c.hidden_size, c.heads, c.intermediate_size, c.hidden_act, eps=c.layer_norm_eps,
                                   post_norm=True, **kw, rngs=r),
            c.num_layers, rngs,
        )

    def __call__(self, input_ids: jax.Array, mask: jax.Array) -> jax.Array:
        """input_ids (B, L) int with L <= max_positions, mask (B, L) 1 = token, 0 = right padding
        (the tokenizer's) -> the last hidden state (B, L, hidden_size)."""
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"the BERT encoder takes at most {self.config.max_positions} tokens, got {input_ids.shape[1]}")
        lengths = jnp.sum(jnp.asarray(mask, jnp.int32), axis=1)
        attend = functools.partial(_attend, kv_lengths=lengths, impl=self.config.attention_impl)
        return scan_layers(self.layers, self.embeddings(input_ids), lambda layer, h: layer(h, attend))


def _attend(q, k, v, *, kv_lengths, impl):
    return attention(q, k, v, kv_lengths=kv_lengths, impl=impl)
