"""CLIP's text transformer (HunyuanVideo's second encoder, CLIP ViT-L/14): pooled EOS output.

Token + learned position embeddings, pre-norm layers with causal (and padding) masked
attention and a quick-GELU MLP, a final LayerNorm; the pooled output is the final state at the
end-of-text token, found exactly as transformers finds it (see `eos_positions`).
"""

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.text.causal_attention import causal_attention
from hyv_jax.nn.embedding import Embedding
from hyv_jax.nn.encoder_layer import EncoderLayer
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.stack import scan_layers, stack_layers

# transformers' marker for configs written before it fixed CLIP's eos_token_id (the openai
# checkpoints still carry it): the EOS is then taken to be the largest id in the row
LEGACY_EOS_TOKEN_ID = 2


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """Defaults are openai/clip-vit-large-patch14's text model."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_layers: int = 12
    heads: int = 12
    max_positions: int = 77
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    eos_token_id: int = LEGACY_EOS_TOKEN_ID
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"

    def __post_init__(self):
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")

    @classmethod
    def from_mapping(cls, values: Mapping) -> "CLIPTextConfig":
        return from_mapping(cls, values, "text_encoder.clip")


def eos_positions(input_ids: jax.Array, eos_token_id: int) -> jax.Array:
    """(B,) index of the pooled token per row, as transformers' CLIPTextTransformer picks it:
    with the legacy eos_token_id 2, the first occurrence of the largest id (the EOS is the last
    vocabulary entry); otherwise the first occurrence of eos_token_id (0 if there is none)."""
    if eos_token_id == LEGACY_EOS_TOKEN_ID:
        return jnp.argmax(input_ids, axis=-1)
    return jnp.argmax((input_ids == eos_token_id).astype(jnp.int32), axis=-1)


class CLIPEmbeddings(nnx.Module):
    def __init__(self, c: CLIPTextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.token_embedding = Embedding(c.vocab_size, c.hidden_size, **kw)
        self.position_embedding = Embedding(c.max_positions, c.hidden_size, axis_name="positions", **kw)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        return self.token_embedding(input_ids) + self.position_embedding(jnp.arange(input_ids.shape[1]))[None]


class CLIPTextModel(nnx.Module):
    def __init__(self, config: CLIPTextConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        self.embeddings = CLIPEmbeddings(c, **kw, rngs=rngs)
        self.layers = stack_layers(
            lambda r: EncoderLayer(c.hidden_size, c.heads, c.intermediate_size, c.hidden_act, eps=c.layer_norm_eps, **kw, rngs=r),
            c.num_layers, rngs,
        )
        self.final_layer_norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps, param_dtype=kw["param_dtype"], rngs=rngs)

    def __call__(self, input_ids: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
        """input_ids (B, L) int with L <= max_positions, mask (B, L) 1 = token, 0 = right padding
        -> (last hidden state (B, L, hidden_size), pooled (B, hidden_size))."""
        if input_ids.shape[1] > self.config.max_positions:
            raise ValueError(f"CLIP takes at most {self.config.max_positions} tokens, got {input_ids.shape[1]}")
        x = self.embeddings(input_ids)
        attend = functools.partial(causal_attention, key_mask=mask)
        x = scan_layers(self.layers, x, lambda layer, h: layer(h, attend))
        x = self.final_layer_norm(x)
        pooled = jnp.take_along_axis(x, eos_positions(input_ids, self.config.eos_token_id)[:, None, None], axis=1)[:, 0]
        return x, pooled
