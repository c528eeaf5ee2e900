"""The flash-attention algorithm shared by the Pallas kernels (GPU and TPU).

Both kernels see padded arrays (B, L, H, D) with L a whole number of blocks and a per-sample
valid key length; they differ only in how they walk the blocks. This module holds what they
share: the per-block math (called inside the kernels), padding to blocks, and the custom VJP
that pairs a forward kernel (saving the log-sum-exp) with a backward kernel.

Shapes inside the kernels: scores (bq, bk) in float32; the row statistics m, l, lse, delta are
kept as (bq, 1) columns so they broadcast against the scores on both lowerings. Scores and the
running max are in base 2 (log2(e) folded into the scale): exp2 is a single instruction on GPUs
where exp is several. The lse leaves the kernels in natural log.
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

# a b^T (q k^T, do v^T) and a b. Products with a transposed left side (p^T do, ds^T q) take
# an explicit .T, the form both Triton and Mosaic lower.
LAST_DIMS = (((1,), (1,)), ((), ()))
MATMUL = (((1,), (0,)), ((), ()))
# The lse of a query without any valid key: finite, so that a log-sum-exp merge of two such
# partial results (ring attention over padding) stays NaN-free; it weighs exp(-1e30) = 0.
EMPTY_LSE = -1e30
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def block_dot(a: jax.Array, b: jax.Array, dims) -> jax.Array:
    """fp32-accumulating matmul of two tiles; fp32 inputs ask for full fp32 precision so the
    kernels match the XLA reference instead of a TF32/bf16-pass approximation."""
    precision = lax.Precision.HIGHEST if a.dtype == jnp.float32 else None
    return lax.dot_general(a, b, dims, precision=precision, preferred_element_type=jnp.float32)


def block_scores(q: jax.Array, k: jax.Array, k_start, kv_len, scale: float) -> jax.Array:
    """Scaled scores, in base 2, of a (bq, D) query tile against a (bk, D) key tile starting at
    key k_start; keys at or past kv_len get -inf."""
    s = block_dot(q, k, LAST_DIMS) * (scale * LOG2E)
    key_pos = k_start + lax.broadcasted_iota(jnp.int32, s.shape, 1)
    return jnp.where(key_pos < kv_len, s, -jnp.inf)


def online_softmax_step(s: jax.Array, m: jax.Array, l: jax.Array, acc: jax.Array, v: jax.Array):
    """One key tile of the online softmax. The caller only visits tiles holding at least one
    valid key, so the new running max is finite."""
    m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
    alpha = jnp.exp2(m - m_new)
    p = jnp.exp2(s - m_new)
    l_new = alpha * l + jnp.sum(p, axis=1, keepdims=True)
    acc_new = alpha * acc + block_dot(p.astype(v.dtype), v, MATMUL)
    return m_new, l_new, acc_new


def finish_softmax(m: jax.Array, l: jax.Array, acc: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(output tile in fp32, lse column); a row without any valid key gets zeros and lse
    EMPTY_LSE."""
    seen = l > 0
    out = acc / jnp.where(seen, l, 1.0)
    lse = jnp.where(seen, (m + jnp.log2(jnp.where(seen, l, 1.0))) * LN2, EMPTY_LSE)
    return out, lse


def block_grads(q, k, v, do, lse, delta, k_start, kv_len, scale: float) -> tuple[jax.Array, jax.Array]:
    """(p, ds) of one (query tile, key tile) pair from the saved lse: p = softmax probabilities,
    ds = p * (dO v^T - delta), the gradient of the scaled natural-log scores."""
    p = jnp.exp2(block_scores(q, k, k_start, kv_len, scale) - lse * LOG2E)
    dp = block_dot(do, v, LAST_DIMS)
    return p, p * (dp - delta)


def num_valid_blocks(kv_len, block: int):
    """Key tiles holding at least one valid key (lax.div: Triton lowers no floor division)."""
    return lax.div(kv_len + (block - 1), block)


def valid_lengths(kv_lengths: jax.Array | None, batch: int, kv_len: int) -> jax.Array:
    """(B,) int32 valid key counts, all keys when None; clipped to [0, kv_len]."""
    if kv_lengths is None:
        return jnp.full((batch,), kv_len, jnp.int32)
    if kv_lengths.shape != (batch,):
        raise ValueError(f"kv_lengths must have shape (batch,) = ({batch},), got {kv_lengths.shape}")
    return jnp.clip(kv_lengths.astype(jnp.int32), 0, kv_len)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def fit_block(block: int, length: int, granule: int) -> int:
    """The configured block, shrunk for short sequences to the length rounded up to granule."""
    return min(block, round_up(length, granule))


def pad_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
    if x.shape[axis] == size:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths)


def varying_like(out_shape, *inputs):
    """`out_shape` (a ShapeDtypeStruct or a tuple of them) varying over every manual mesh axis
    its inputs vary over: inside `jax.shard_map` with check_vma, pallas_call needs to be told
    (context-parallel attention runs the kernels there); elsewhere the mark is ignored."""
    varying = frozenset().union(*(jax.typeof(x).manual_axis_type.varying for x in inputs))
    mat = jax.sharding.ManualAxisType(varying=varying)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, manual_axis_type=mat), out_shape)


@dataclasses.dataclass(frozen=True)
class FlashKernels:
    """A backend: forward(q, k, v, lengths) -> (o, lse (B, H, Lq, 1) fp32) and
    backward(q, k, v, lengths, lse, do, delta) -> (dq, dk, dv), on padded (B, L, H, D) arrays.
    Both are closed over their static settings (blocks, scale, interpret)."""

    forward: Callable
    backward: Callable


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def flash(kernels: FlashKernels, q, k, v, lengths):
    """(out (B, Lq, H, D), lse (B, H, Lq, 1) fp32), differentiable in q, k, v through both
    outputs: a cotangent on the lse (from a ring-attention merge) enters as delta -= dlse."""
    return kernels.forward(q, k, v, lengths)


def _flash_fwd(kernels, q, k, v, lengths):
    out, lse = kernels.forward(q, k, v, lengths)
    return (out, lse), (q, k, v, lengths, out, lse)


def _flash_bwd(kernels, residuals, cotangents):
    q, k, v, lengths, out, lse = residuals
    d_out, d_lse = cotangents
    delta = jnp.einsum("blhd,blhd->bhl", out.astype(jnp.float32), d_out.astype(jnp.float32))[..., None]
    dq, dk, dv = kernels.backward(q, k, v, lengths, lse, d_out.astype(q.dtype), delta - d_lse)
    return dq, dk, dv, None


flash.defvjp(_flash_fwd, _flash_bwd)


def run_padded(kernels: FlashKernels, q, k, v, kv_lengths, *, block_q: int, block_k: int, head_dim: int):
    """Pads q to whole query blocks, k and v to whole key blocks and the head dim to head_dim
    (zeros: they change no score and add output columns that are cut off), runs the kernels and
    cuts the padding off again. Returns (out (B, Lq, H, D), lse (B, Lq, H) fp32)."""
    batch, q_len, _, dim = q.shape
    kv_len = k.shape[1]
    lengths = valid_lengths(kv_lengths, batch, kv_len)
    q = pad_axis(pad_axis(q, 1, round_up(q_len, block_q)), 3, head_dim)
    k, v = (pad_axis(pad_axis(x, 1, round_up(kv_len, block_k)), 3, head_dim) for x in (k, v))
    out, lse = flash(kernels, q, k, v, lengths)
    return out[:, :q_len, :, :dim], jnp.swapaxes(lse[:, :, :q_len, 0], 1, 2)
