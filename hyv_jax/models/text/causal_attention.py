"""Causal self-attention over right-padded token sequences, as both text encoders use it."""

import jax
import jax.numpy as jnp


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array) -> jax.Array:
    """q (B, L, heads, head_dim), k and v (B, L, kv_heads, head_dim) with kv_heads dividing heads
    (grouped-query attention), key_mask (B, L) nonzero = real token -> (B, L, heads, head_dim).

    Query i attends to keys j <= i that the mask keeps. Logits and softmax in float32 whatever
    the input dtype (fp16 logits overflow; jax.nn.dot_product_attention asks for an fp16 x fp16 ->
    fp32 dot that XLA:CPU rejects). A right-padded row always keeps its first token, so no query
    is left without keys (padding positions get well-defined outputs, as in transformers); the
    text sequences are short (77 / 351 tokens), so the (L, L) logits are cheap."""
    b, length, heads, dim = q.shape
    kv_heads = k.shape[2]
    grouped = q.reshape(b, length, kv_heads, heads // kv_heads, dim)  # head h reads kv head h // group
    logits = jnp.einsum("bqhgd,bkhd->bhgqk", grouped, k, preferred_element_type=jnp.float32) * dim ** -0.5
    causal = jnp.arange(length)[:, None] >= jnp.arange(length)[None, :]
    allowed = causal[None, None, None] & key_mask.astype(bool)[:, None, None, None, :]
    probs = jax.nn.softmax(jnp.where(allowed, logits, jnp.finfo(jnp.float32).min), axis=-1)
    out = jnp.einsum("bhgqk,bkhd->bqhgd", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return out.reshape(b, length, heads, dim).astype(q.dtype)
