"""Plain XLA attention: materialises the (Lq, Lk) logits; the reference the kernels match."""

import jax
import jax.numpy as jnp

from hyv_jax.attention.flash import EMPTY_LSE


def xla_attention_with_lse(q: jax.Array, k: jax.Array, v: jax.Array,
                           key_mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """q (B, Lq, H, D), k and v (B, Lk, H, D), key_mask (B, Lk) bool or None ->
    (out (B, Lq, H, D), lse (B, Lq, H) float32), the kernels' convention.

    Logits and softmax in float32; a query whose keys are all masked gets zeros and EMPTY_LSE.
    """
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
    if key_mask is not None:
        logits = jnp.where(key_mask[:, None, None, :], logits, -jnp.inf)
    peak = jnp.max(logits, axis=-1, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    weights = jnp.exp(logits - peak)
    denom = jnp.sum(weights, axis=-1, keepdims=True)
    seen = denom > 0
    safe = jnp.where(seen, denom, 1.0)
    probs = weights / safe
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
    lse = jnp.where(seen, peak + jnp.log(safe), EMPTY_LSE)[..., 0]
    return out.astype(q.dtype), jnp.transpose(lse, (0, 2, 1))


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None) -> jax.Array:
    """xla_attention_with_lse without the lse."""
    return xla_attention_with_lse(q, k, v, key_mask)[0]
