"""Flash attention as Pallas Mosaic kernels (TPU): forward and backward.

The kernels run on (B, H, L, D) so a tile's last two dims are (rows, head dim), as Mosaic wants.
The grid is (sample, head, output block, reduction block) with the reduction innermost and
"arbitrary"; running statistics and accumulators live in VMEM scratch across it. The valid
key lengths are scalar-prefetched into SMEM: tiles wholly in the padding are skipped, and their
index maps repeat the previous block so the pipeline issues no DMA for them.
"""

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from hyv_jax.attention import flash as fl

DEFAULT_BLOCK_Q = 512
DEFAULT_BLOCK_K = 1024
# Mosaic tiles: rows a multiple of the 8 sublanes; key blocks are the scores' lane dim (128).
Q_GRANULE = 8
K_GRANULE = 128

_SEMANTICS = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel", "arbitrary"))


def _last_valid_block(kv_len, block: int):
    return jnp.maximum(fl.num_valid_blocks(kv_len, block) - 1, 0)


def _forward_kernel(len_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, m_sc, l_sc, acc_sc, *, scale: float):
    kv_len, j = len_ref[pl.program_id(0)], pl.program_id(3)
    block_k = k_ref.shape[0]

    @pl.when(j == 0)
    def _init():
        m_sc[...] = jnp.full(m_sc.shape, -jnp.inf, jnp.float32)
        l_sc[...] = jnp.zeros(l_sc.shape, jnp.float32)
        acc_sc[...] = jnp.zeros(acc_sc.shape, jnp.float32)

    @pl.when(j * block_k < kv_len)
    def _step():
        s = fl.block_scores(q_ref[...], k_ref[...], j * block_k, kv_len, scale)
        m_sc[...], l_sc[...], acc_sc[...] = fl.online_softmax_step(s, m_sc[...], l_sc[...], acc_sc[...], v_ref[...])

    @pl.when(j == pl.num_programs(3) - 1)
    def _finish():
        out, lse = fl.finish_softmax(m_sc[...], l_sc[...], acc_sc[...])
        o_ref[...] = out.astype(o_ref.dtype)
        lse_ref[...] = lse


def _dkdv_kernel(len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, dk_sc, dv_sc, *,
                 scale: float):
    kv_len, i = len_ref[pl.program_id(0)], pl.program_id(3)
    k_start = pl.program_id(2) * k_ref.shape[0]

    @pl.when(i == 0)
    def _init():
        dk_sc[...] = jnp.zeros(dk_sc.shape, jnp.float32)
        dv_sc[...] = jnp.zeros(dv_sc.shape, jnp.float32)

    @pl.when(k_start < kv_len)
    def _step():
        q, do = q_ref[...], do_ref[...]
        p, ds = fl.block_grads(q, k_ref[...], v_ref[...], do, lse_ref[...], delta_ref[...], k_start, kv_len, scale)
        dv_sc[...] += fl.block_dot(p.astype(do.dtype).T, do, fl.MATMUL)
        dk_sc[...] += fl.block_dot(ds.astype(q.dtype).T, q, fl.MATMUL)

    @pl.when(i == pl.num_programs(3) - 1)
    def _finish():
        dk_ref[...] = (dk_sc[...] * scale).astype(dk_ref.dtype)
        dv_ref[...] = dv_sc[...].astype(dv_ref.dtype)


def _dq_kernel(len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, dq_sc, *, scale: float):
    kv_len, j = len_ref[pl.program_id(0)], pl.program_id(3)
    block_k = k_ref.shape[0]

    @pl.when(j == 0)
    def _init():
        dq_sc[...] = jnp.zeros(dq_sc.shape, jnp.float32)

    @pl.when(j * block_k < kv_len)
    def _step():
        k = k_ref[...]
        _, ds = fl.block_grads(q_ref[...], k, v_ref[...], do_ref[...], lse_ref[...], delta_ref[...], j * block_k,
                               kv_len, scale)
        dq_sc[...] += fl.block_dot(ds.astype(k.dtype), k, fl.MATMUL)

    @pl.when(j == pl.num_programs(3) - 1)
    def _finish():
        dq_ref[...] = (dq_sc[...] * scale).astype(dq_ref.dtype)


def _query_side_specs(block_q: int, dim: int):
    """Specs over the grid (b, h, query block i, key block j) for a row tile and its column."""
    tile = pl.BlockSpec((None, None, block_q, dim), lambda b, h, i, j, lens: (b, h, i, 0))
    column = pl.BlockSpec((None, None, block_q, 1), lambda b, h, i, j, lens: (b, h, i, 0))
    return tile, column


def _key_side_spec(block_k: int, dim: int):
    """A key tile over the grid (b, h, query block i, key block j), clamped to the last block
    holding a valid key."""
    return pl.BlockSpec((None, None, block_k, dim),
                        lambda b, h, i, j, lens: (b, h, jnp.minimum(j, _last_valid_block(lens[b], block_k)), 0))


def _heads_major(*xs):
    return [jnp.swapaxes(x, 1, 2) for x in xs]


def _call(kernel, out_shape, grid, in_specs, out_specs, scratch, interpret, name, *args):
    return pl.pallas_call(
        kernel,
        out_shape=fl.varying_like(out_shape, *args),
        grid_spec=pltpu.PrefetchScalarGridSpec(
            num_scalar_prefetch=1, grid=grid, in_specs=in_specs, out_specs=out_specs, scratch_shapes=scratch),
        compiler_params=_SEMANTICS,
        interpret=pltpu.InterpretParams() if interpret else False,
        name=name,
    )(*args)


def _forward(q, k, v, lengths, *, scale, block_q, block_k, interpret):
    q, k, v = _heads_major(q, k, v)
    batch, heads, q_len, dim = q.shape
    tile, column = _query_side_specs(block_q, dim)
    kv = _key_side_spec(block_k, dim)
    out, lse = _call(
        functools.partial(_forward_kernel, scale=scale),
        (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32)),
        (batch, heads, q_len // block_q, k.shape[2] // block_k),
        [tile, kv, kv], (tile, column),
        [pltpu.VMEM((block_q, 1), jnp.float32), pltpu.VMEM((block_q, 1), jnp.float32),
         pltpu.VMEM((block_q, dim), jnp.float32)],
        interpret, "hyv_flash_fwd", lengths, q, k, v)
    return jnp.swapaxes(out, 1, 2), lse


def _backward(q, k, v, lengths, lse, do, delta, *, scale, block_q, block_k, interpret):
    q, k, v, do = _heads_major(q, k, v, do)
    batch, heads, q_len, dim = q.shape
    kv_len = k.shape[2]

    # dk, dv: grid (b, h, key block, query block); a key block in the padding pins its query
    # side to block 0 so the reduction loop fetches nothing.
    def q_block(jk, i, kv_valid):
        return jnp.where(jk * block_k < kv_valid, i, 0)

    q_tile = pl.BlockSpec((None, None, block_q, dim), lambda b, h, jk, i, lens: (b, h, q_block(jk, i, lens[b]), 0))
    q_column = pl.BlockSpec((None, None, block_q, 1), lambda b, h, jk, i, lens: (b, h, q_block(jk, i, lens[b]), 0))
    k_tile = pl.BlockSpec((None, None, block_k, dim), lambda b, h, jk, i, lens: (b, h, jk, 0))
    dk, dv = _call(
        functools.partial(_dkdv_kernel, scale=scale),
        (jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)),
        (batch, heads, kv_len // block_k, q_len // block_q),
        [q_tile, k_tile, k_tile, q_tile, q_column, q_column], (k_tile, k_tile),
        [pltpu.VMEM((block_k, dim), jnp.float32), pltpu.VMEM((block_k, dim), jnp.float32)],
        interpret, "hyv_flash_dkdv", lengths, q, k, v, do, lse, delta)

    tile, column = _query_side_specs(block_q, dim)
    kv = _key_side_spec(block_k, dim)
    dq = _call(
        functools.partial(_dq_kernel, scale=scale),
        jax.ShapeDtypeStruct(q.shape, q.dtype),
        (batch, heads, q_len // block_q, kv_len // block_k),
        [tile, kv, kv, tile, column, column], tile,
        [pltpu.VMEM((block_q, dim), jnp.float32)],
        interpret, "hyv_flash_dq", lengths, q, k, v, do, lse, delta)
    return _heads_major(dq, dk, dv)


def flash_attention_with_lse(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: jax.Array | None = None,
    *,
    block_q: int = DEFAULT_BLOCK_Q,
    block_k: int = DEFAULT_BLOCK_K,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Non-causal attention, q (B, Lq, H, D), k and v (B, Lk, H, D), scale 1/sqrt(D); keys at or
    past kv_lengths[b] are ignored for sample b. Returns (out (B, Lq, H, D), lse (B, Lq, H) fp32
    natural-log sum of exp of the scaled scores, flash.EMPTY_LSE where no key is valid), both
    differentiable (for log-sum-exp merges of partial results). block_q: a multiple of 8, block_k: a multiple of 128 (shrunk for short
    sequences); sequences are padded to whole blocks inside. interpret=True simulates the TPU
    on the CPU (tests)."""
    if block_q % Q_GRANULE or block_k % K_GRANULE:
        raise ValueError(f"TPU blocks: block_q={block_q} must be a multiple of {Q_GRANULE}, "
                         f"block_k={block_k} a multiple of {K_GRANULE}")
    block_q = fl.fit_block(block_q, q.shape[1], Q_GRANULE)
    block_k = fl.fit_block(block_k, k.shape[1], K_GRANULE)
    settings = dict(scale=q.shape[-1] ** -0.5, block_q=block_q, block_k=block_k, interpret=interpret)
    kernels = fl.FlashKernels(functools.partial(_forward, **settings), functools.partial(_backward, **settings))
    return fl.run_padded(kernels, q, k, v, kv_lengths, block_q=block_q, block_k=block_k, head_dim=q.shape[-1])


def flash_attention(q, k, v, kv_lengths=None, **settings) -> jax.Array:
    """flash_attention_with_lse without the lse."""
    return flash_attention_with_lse(q, k, v, kv_lengths, **settings)[0]
