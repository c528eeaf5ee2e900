"""JAX's own TPU splash attention behind our calling convention.

Splash takes a static (per-head) mask and dynamic segment ids; the per-sample valid key length
becomes segment ids: every query in segment 0, valid keys in segment 0, padded keys in segment 1.
Splash runs one sample with heads first, so it is vmapped over the batch (under shard_map each
device runs it on its own shard).
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as sa

from hyv_jax.attention import flash as fl

DEFAULT_BLOCK = 512
# The scores' lane dim: splash blocks are multiples of 128.
GRANULE = 128


def segment_ids(lengths: jax.Array, q_len: int, kv_len: int) -> sa.SegmentIds:
    """Batched SegmentIds (B, Lq) and (B, Lk): keys at or past lengths[b] are cut off from every
    query of sample b."""
    kv = (jnp.arange(kv_len)[None, :] >= lengths[:, None]).astype(jnp.int32)
    return sa.SegmentIds(q=jnp.zeros((lengths.shape[0], q_len), jnp.int32), kv=kv)


@functools.cache
def _kernel(q_len: int, kv_len: int, heads: int, block_q: int, block_k: int, interpret: bool):
    """Splash analyses its mask block by block in numpy (seconds at 119K tokens): once per shape.
    Built as concrete arrays even when first asked for inside a trace, so the cache leaks no
    tracer."""
    with jax.ensure_compile_time_eval():
        return sa.make_splash_mha(
            sa.MultiHeadMask([sa.FullMask((q_len, kv_len))] * heads),
            block_sizes=sa.BlockSizes(
                block_q=block_q, block_kv=block_k, block_kv_compute=block_k,
                block_q_dkv=block_q, block_kv_dkv=block_k, block_kv_dkv_compute=block_k,
                use_fused_bwd_kernel=True),
            head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: jax.Array | None = None,
    *,
    block: int = DEFAULT_BLOCK,
    interpret: bool = False,
) -> jax.Array:
    """Non-causal attention, q (B, Lq, H, D), k and v (B, Lk, H, D), scale 1/sqrt(D), keys at or
    past kv_lengths[b] ignored; differentiable (splash's fused backward). Every sample needs at
    least one valid key (splash's softmax over an empty row is undefined). TPU only, or
    interpret=True on any backend (slow; tests)."""
    if not interpret and jax.default_backend() != "tpu":
        raise ValueError(f"impl='splash' runs on TPU only (backend here: {jax.default_backend()}); "
                         "use impl='pallas' or 'cudnn' on GPU, 'xla' on CPU, or impl='auto'")
    if block % GRANULE:
        raise ValueError(f"splash block={block} must be a multiple of {GRANULE}")
    batch, q_len, heads, dim = q.shape
    kv_len = k.shape[1]
    block_q, block_k = fl.fit_block(block, q_len, GRANULE), fl.fit_block(block, kv_len, GRANULE)
    q_pad, kv_pad = fl.round_up(q_len, block_q), fl.round_up(kv_len, block_k)
    ids = segment_ids(fl.valid_lengths(kv_lengths, batch, kv_len), q_pad, kv_pad)
    # Splash does not scale the scores: fold 1/sqrt(D) into q.
    q = (q.astype(jnp.float32) * dim ** -0.5).astype(q.dtype)
    q, k, v = (jnp.swapaxes(fl.pad_axis(x, 1, n), 1, 2) for x, n in ((q, q_pad), (k, kv_pad), (v, kv_pad)))
    out = jax.vmap(_kernel(q_pad, kv_pad, heads, block_q, block_k, interpret))(q, k, v, ids)
    return jnp.swapaxes(out, 1, 2)[:, :q_len]
