"""Shared check of an attention kernel against the XLA reference: outputs, lse and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
from helpers import report

from hyv_jax.attention.flash import EMPTY_LSE
from hyv_jax.attention.xla import xla_attention

# Relative error bounds (max abs error / max |reference|): fp32 kernels match to rounding; bf16
# inputs keep fp32 accumulation, but p and ds are rounded to bf16 before their matmuls.
TOLERANCE = {jnp.float32: 2e-5, jnp.bfloat16: 3e-2}


def random_inputs(seed: int, batch: int, q_len: int, kv_len: int, heads: int, dim: int, dtype):
    keys = jax.random.split(jax.random.key(seed), 5)
    q = jax.random.normal(keys[0], (batch, q_len, heads, dim), jnp.float32).astype(dtype)
    k = jax.random.normal(keys[1], (batch, kv_len, heads, dim), jnp.float32).astype(dtype)
    v = jax.random.normal(keys[2], (batch, kv_len, heads, dim), jnp.float32).astype(dtype)
    d_out = jax.random.normal(keys[3], (batch, q_len, heads, dim), jnp.float32)
    d_lse = jax.random.normal(keys[4], (batch, q_len, heads), jnp.float32)
    return q, k, v, d_out, d_lse


def reference_with_lse(q, k, v, kv_lengths):
    """XLA attention in fp32 on the same (possibly bf16-rounded) inputs, and its lse."""
    q, k, v = (x.astype(jnp.float32) for x in (q, k, v))
    mask = jnp.arange(k.shape[1])[None, :] < kv_lengths[:, None]
    logits = jnp.einsum("bqhd,bkhd->bqhk", q, k, precision="highest") * q.shape[-1] ** -0.5
    logits = jnp.where(mask[:, None, None, :], logits, -jnp.inf)
    # A sample without keys takes its lse from finite stand-in logits (keeps its gradient 0, not NaN).
    has_keys = (kv_lengths > 0)[:, None, None]
    lse = jax.nn.logsumexp(jnp.where(has_keys[..., None], logits, 0.0), axis=-1)
    return xla_attention(q, k, v, mask), jnp.where(has_keys, lse, EMPTY_LSE)


def check_kernel(name, kernel, q, k, v, kv_lengths, d_out, d_lse=None):
    """kernel(q, k, v, kv_lengths) -> out, or (out, lse) when d_lse is given. Compares the
    output (and lse) and the gradients of sum(out * d_out) (+ sum(lse * d_lse)) in q, k, v."""
    with_lse = d_lse is not None

    def loss(fn, q, k, v):
        result = fn(q, k, v, kv_lengths)
        out, lse = result if with_lse else (result, None)
        total = jnp.sum(out.astype(jnp.float32) * d_out)
        if with_lse:
            total += jnp.sum(jnp.where(lse > EMPTY_LSE, lse, 0.0) * d_lse)
        return total, result

    def reference(q, k, v, lengths):
        out, lse = reference_with_lse(q, k, v, lengths)
        return (out, lse) if with_lse else out

    tol = TOLERANCE[q.dtype.type]
    # One jit each: the interpreter's many small ops then compile once instead of dispatching.
    grads, ours = jax.jit(jax.grad(lambda *a: loss(kernel, *a), argnums=(0, 1, 2), has_aux=True))(q, k, v)
    ref_grads, ref = jax.jit(jax.grad(lambda *a: loss(reference, *a), argnums=(0, 1, 2), has_aux=True))(q, k, v)
    pairs = list(zip(("out", "lse"), ours, ref)) if with_lse else [("out", ours, ref)]
    pairs += list(zip(("dq", "dk", "dv"), grads, ref_grads))
    if with_lse:
        # Rows without keys hold EMPTY_LSE exactly; the error is measured on the others.
        lse, ref_lse = ours[1], ref[1]
        empty = ref_lse == EMPTY_LSE
        assert bool(jnp.all((lse == EMPTY_LSE) == empty)), f"{name}: rows without keys must get EMPTY_LSE"
        pairs[1] = ("lse", jnp.where(empty, 0.0, lse), jnp.where(empty, 0.0, ref_lse))
    for what, a, b in pairs:
        assert a.shape == b.shape and a.dtype == (jnp.float32 if what == "lse" else q.dtype), (what, a.shape, a.dtype)
        _, rel = report(f"{name} {q.dtype.name} {what}", np.asarray(a, np.float32), np.asarray(b, np.float32))
        assert rel < tol, f"{name} {what}: relative error {rel:.2e} > {tol:.0e}"
