"""The one attention entry point of the library; kernels plug in behind `impl`."""

import jax
import jax.numpy as jnp

from hyv_jax.attention.xla import xla_attention

IMPLEMENTATIONS = {"xla": xla_attention}


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    kv_lengths: jax.Array | None = None,
    kv_mask: jax.Array | None = None,
    impl: str = "xla",
) -> jax.Array:
    """Non-causal multi-head attention, layout (B, L, heads, head_dim), scale 1/sqrt(head_dim).

    kv_lengths (B,) int: only the first kv_lengths[b] keys of sample b are attended to (the
    joint image+text sequence with right-padded text). kv_mask (B, Lk) bool: an arbitrary key
    mask (the token refiner's positional text mask). Both may be given.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {sorted(IMPLEMENTATIONS)}")
    if q.shape[-1] != k.shape[-1] or k.shape != v.shape:
        raise ValueError(f"attention shapes do not match: q {q.shape}, k {k.shape}, v {v.shape}")
    key_mask = None
    if kv_lengths is not None:
        key_mask = jnp.arange(k.shape[1])[None, :] < kv_lengths[:, None]
    if kv_mask is not None:
        key_mask = kv_mask if key_mask is None else key_mask & kv_mask
    return IMPLEMENTATIONS[impl](q, k, v, key_mask)
