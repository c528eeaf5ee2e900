"""Flash attention as Pallas kernels lowered to Triton (GPU): forward and backward.

Layout stays (B, L, H, D): each program owns one (query block, sample, head) and the block specs
pick the head out of the array, so no transposes are made. The forward walks the key blocks in
an inner loop that stops after the last block holding a valid key, so the padded text tail costs
nothing. The backward is two kernels: dk/dv with a program per key block looping over query
blocks, and dq with a program per query block looping over key blocks.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from hyv_jax.attention import flash as fl

DEFAULT_BLOCK_Q = 128
DEFAULT_BLOCK_K = 64
# Backward (resident, step): the dk/dv accumulators of a resident tile live in registers, so the
# resident tile is smaller than the forward's query tile.
DEFAULT_BACKWARD_BLOCKS = (64, 32)
# Triton tiles are powers of two of at least 16 in every dim (tl.dot's minimum).
MIN_BLOCK = 16


def _forward_kernel(len_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, *, scale: float, block_k: int):
    kv_len = len_ref[pl.program_id(1)]
    q = q_ref[...]

    def step(j, carry):
        keys = pl.ds(j * block_k, block_k)
        s = fl.block_scores(q, k_ref[keys, :], j * block_k, kv_len, scale)
        return fl.online_softmax_step(s, *carry, v_ref[keys, :])

    rows, dim = q.shape
    init = (jnp.full((rows, 1), -jnp.inf, jnp.float32), jnp.zeros((rows, 1), jnp.float32),
            jnp.zeros((rows, dim), jnp.float32))
    out, lse = fl.finish_softmax(*lax.fori_loop(0, fl.num_valid_blocks(kv_len, block_k), step, init))
    o_ref[...] = out.astype(o_ref.dtype)
    lse_ref[...] = lse


def _dkdv_kernel(len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dk_ref, dv_ref, *,
                 scale: float, block_q: int):
    kv_len = len_ref[pl.program_id(1)]
    k_start = pl.program_id(0) * k_ref.shape[0]
    k, v = k_ref[...], v_ref[...]

    def step(i, carry):
        dk, dv = carry
        rows = pl.ds(i * block_q, block_q)
        q, do = q_ref[rows, :], do_ref[rows, :]
        p, ds = fl.block_grads(q, k, v, do, lse_ref[rows, :], delta_ref[rows, :], k_start, kv_len, scale)
        dv = dv + fl.block_dot(p.astype(do.dtype).T, do, fl.MATMUL)
        dk = dk + fl.block_dot(ds.astype(q.dtype).T, q, fl.MATMUL)
        return dk, dv

    # A key block wholly in the padding gets zero gradients without touching a query.
    n_q = jnp.where(k_start < kv_len, q_ref.shape[0] // block_q, 0)
    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(0, n_q, step, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(len_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, *, scale: float, block_k: int):
    kv_len = len_ref[pl.program_id(1)]
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]

    def step(j, dq):
        keys = pl.ds(j * block_k, block_k)
        k = k_ref[keys, :]
        _, ds = fl.block_grads(q, k, v_ref[keys, :], do, lse, delta, j * block_k, kv_len, scale)
        return dq + fl.block_dot(ds.astype(k.dtype), k, fl.MATMUL)

    dq = lax.fori_loop(0, fl.num_valid_blocks(kv_len, block_k), step, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _specs(block_q: int, q_len: int, kv_len: int, dim: int):
    """Block specs over the grid (query or key block, sample, head): a tile of `block_q` rows of
    one head, the whole sequence of one head, its lse column, and the lengths vector."""
    tile = pl.BlockSpec((None, block_q, None, dim), lambda i, b, h: (b, i, h, 0))
    whole_q = pl.BlockSpec((None, q_len, None, dim), lambda i, b, h: (b, 0, h, 0))
    whole_kv = pl.BlockSpec((None, kv_len, None, dim), lambda i, b, h: (b, 0, h, 0))
    column = pl.BlockSpec((None, None, block_q, 1), lambda i, b, h: (b, h, i, 0))
    whole_column = pl.BlockSpec((None, None, q_len, 1), lambda i, b, h: (b, h, 0, 0))
    return tile, whole_q, whole_kv, column, whole_column


def _lengths_spec(batch: int):
    return pl.BlockSpec((batch,), lambda i, b, h: (0,))


def _forward(q, k, v, lengths, *, scale, block_q, block_k, num_warps, num_stages, interpret):
    batch, q_len, heads, dim = q.shape
    tile, _, whole_kv, column, _ = _specs(block_q, q_len, k.shape[1], dim)
    return pl.pallas_call(
        functools.partial(_forward_kernel, scale=scale, block_k=block_k),
        out_shape=fl.varying_like((jax.ShapeDtypeStruct(q.shape, q.dtype),
                                   jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32)), lengths, q, k, v),
        grid=(q_len // block_q, batch, heads),
        in_specs=[_lengths_spec(batch), tile, whole_kv, whole_kv],
        out_specs=(tile, column),
        compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages),
        interpret=interpret,
        name="hyv_flash_fwd",
    )(lengths, q, k, v)


def _backward(q, k, v, lengths, lse, do, delta, *, scale, block_major, block_minor, num_warps, num_stages,
              interpret):
    """dk, dv with a program per `block_major` keys stepping `block_minor` queries; dq with a
    program per `block_major` queries stepping `block_minor` keys."""
    batch, q_len, heads, dim = q.shape
    kv_len = k.shape[1]
    params = plgpu.CompilerParams(num_warps=num_warps, num_stages=num_stages)
    tile, whole_q, whole_kv, column, whole_column = _specs(block_major, q_len, kv_len, dim)
    inputs = (lengths, q, k, v, do, lse, delta)
    dk, dv = pl.pallas_call(
        functools.partial(_dkdv_kernel, scale=scale, block_q=block_minor),
        out_shape=fl.varying_like((jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)), *inputs),
        grid=(kv_len // block_major, batch, heads),
        in_specs=[_lengths_spec(batch), whole_q, tile, tile, whole_q, whole_column, whole_column],
        out_specs=(tile, tile),
        compiler_params=params,
        interpret=interpret,
        name="hyv_flash_dkdv",
    )(*inputs)
    dq = pl.pallas_call(
        functools.partial(_dq_kernel, scale=scale, block_k=block_minor),
        out_shape=fl.varying_like(jax.ShapeDtypeStruct(q.shape, q.dtype), *inputs),
        grid=(q_len // block_major, batch, heads),
        in_specs=[_lengths_spec(batch), tile, whole_kv, whole_kv, tile, column, column],
        out_specs=tile,
        compiler_params=params,
        interpret=interpret,
        name="hyv_flash_dq",
    )(*inputs)
    return dq, dk, dv


def flash_attention_with_lse(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: jax.Array | None = None,
    *,
    block_q: int = DEFAULT_BLOCK_Q,
    block_k: int = DEFAULT_BLOCK_K,
    num_warps: int | None = None,
    num_stages: int = 3,
    backward_blocks: tuple[int, int] = DEFAULT_BACKWARD_BLOCKS,
    backward_num_warps: int = 4,
    backward_num_stages: int = 2,
    interpret: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """Non-causal attention, q (B, Lq, H, D), k and v (B, Lk, H, D), scale 1/sqrt(D); keys at or
    past kv_lengths[b] are ignored for sample b. Returns (out (B, Lq, H, D), lse (B, Lq, H) fp32
    natural-log sum of exp of the scaled scores, flash.EMPTY_LSE where no key is valid), both
    differentiable (for log-sum-exp merges of partial results).

    Forward tiles: block_q queries, stepping block_k keys, num_warps (default 4 for D <= 64,
    else 8). Backward: backward_blocks = (resident rows, step rows) of the dk/dv and dq kernels
    (keys resident while stepping queries, and the reverse). All blocks are powers of two >= 16,
    shrunk for short sequences; sequences are padded to whole blocks and D to a power of two
    inside. interpret=True runs the kernels on the CPU (tests)."""
    blocks = dict(block_q=block_q, block_k=block_k, backward_major=backward_blocks[0],
                  backward_minor=backward_blocks[1])
    for name, block in blocks.items():
        if block < MIN_BLOCK or block & (block - 1):
            raise ValueError(f"{name}={block}: Triton blocks must be powers of two >= {MIN_BLOCK}")
    dim = q.shape[-1]
    if dim > 256:
        raise ValueError(f"head dim {dim} > 256 does not fit a Triton tile; split the heads")
    # Blocks shrink to the shorter of the two sequences rounded up to a power of two; padding to
    # the largest block (all powers of two) makes every block divide both lengths.
    shortest = pl.next_power_of_2(max(MIN_BLOCK, min(q.shape[1], k.shape[1])))
    fwd_q, fwd_k, major, minor = (min(b, shortest) for b in blocks.values())
    common = dict(scale=dim ** -0.5, interpret=interpret)
    kernels = fl.FlashKernels(
        functools.partial(_forward, block_q=fwd_q, block_k=fwd_k, num_warps=num_warps or (4 if dim <= 64 else 8),
                          num_stages=num_stages, **common),
        functools.partial(_backward, block_major=major, block_minor=minor, num_warps=backward_num_warps,
                          num_stages=backward_num_stages, **common))
    multiple = max(fwd_q, fwd_k, major, minor)
    return fl.run_padded(kernels, q, k, v, kv_lengths, block_q=multiple, block_k=multiple,
                         head_dim=max(MIN_BLOCK, pl.next_power_of_2(dim)))


def flash_attention(q, k, v, kv_lengths=None, **settings) -> jax.Array:
    """flash_attention_with_lse without the lse."""
    return flash_attention_with_lse(q, k, v, kv_lengths, **settings)[0]
