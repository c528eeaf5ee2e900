"""Causal self-attention over right-padded token sequences, as both text encoders use it."""

import jax


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """q (B, L, heads, head_dim), k and v (B, L, kv_heads, head_dim) with kv_heads dividing heads
    (grouped-query attention), key_mask (B, L) nonzero = real token -> (B, L, heads, head_dim).

    Query i attends to keys j <= i that the mask keeps, with the softmax in float32. A right-padded
    row always keeps its first token, so no query is left without keys (padding positions get
    well-defined outputs, as in transformers)."""
    # jax's XLA path: logits and softmax in float32, GQA without repeating k/v; the text
    # sequences are short (77 / 351 tokens), so the (L, L) logits are cheap.
    mask = key_mask.astype(bool)[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation="xla")
