"""Context (sequence) parallel attention with `jax.shard_map`: Ulysses, ring, and both (USP).

The whole joint sequence [image tokens; padded text] is split evenly over the context devices
(zero-padded to a multiple of their count). Keys are masked by global position against the
per-sample valid length `kv_lengths`, so text padding and the split's own padding are excluded
wherever a key block travels, and text tokens need no special path.

- Ulysses: an all-to-all trades the sequence shard for a head shard, every device runs the
  ordinary `attention(...)` over the full sequence for its heads, and a second all-to-all
  trades back. Needs heads (per tensor shard) divisible by the Ulysses degree.
- Ring: every device keeps its query block and passes its key/value block around the ring
  (`ppermute` in `lax.scan`), merging partial results with their log-sum-exp.
- USP: Ulysses over the inner context axis, then ring over the outer one on the gathered
  (longer) blocks; for more devices than heads.
All collectives have transposes, so `jax.grad` through them gives the training backward pass.
"""

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from hyv_jax.attention import attention, attention_with_lse, lse_impl_streams_keys
from hyv_jax.attention.flash import pad_axis, valid_lengths
from hyv_jax.parallel.logical_axes import ACTIVATION_RULES, Rules, partition_spec


def block_attention_with_lse(
    q: jax.Array, k: jax.Array, v: jax.Array, kv_lengths: jax.Array, impl: str, key_block: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """The library's `attention_with_lse(..., impl)` over one key block, out in float32 for the
    merges. kv_lengths (B,) counts the block's valid (leading) keys.

    XLA attention materialises (Lq x Lk) logits, so with `key_block` it visits the keys in
    chunks of that size (online merge, each chunk rematerialised in the backward pass); the
    flash kernels stream the keys themselves and take the whole block.
    """
    length = k.shape[1]
    if key_block is None or length <= key_block or lse_impl_streams_keys(impl):
        out, lse = attention_with_lse(q, k, v, kv_lengths=kv_lengths, impl=impl)
        return out.astype(jnp.float32), lse
    pad = -length % key_block
    if pad:  # padded keys lie past every chunk's valid length
        k, v = (pad_axis(x, 1, length + pad) for x in (k, v))
    chunks = (length + pad) // key_block
    split = lambda x: jnp.moveaxis(x.reshape(x.shape[0], chunks, key_block, *x.shape[2:]), 1, 0)  # noqa: E731
    lengths = jnp.clip(kv_lengths[None, :] - key_block * jnp.arange(chunks)[:, None], 0, key_block)
    chunk = jax.checkpoint(lambda q, k, v, n: block_attention_with_lse(q, k, v, n, impl))
    k, v = split(k), split(v)

    def step(carry, kvn):
        return merge_partials(*carry, *chunk(q, *kvn)), None

    # The first chunk seeds the carry (inside shard_map it then has the right varying axes).
    carry = chunk(q, k[0], v[0], lengths[0])
    return lax.scan(step, carry, (k[1:], v[1:], lengths[1:]))[0]


def merge_partials(out_a, lse_a, out_b, lse_b):
    """Combines two attention results over disjoint key sets into the result over their union."""
    peak = jnp.maximum(lse_a, lse_b)
    wa, wb = jnp.exp(lse_a - peak), jnp.exp(lse_b - peak)
    total = wa + wb
    out = (out_a * wa[..., None] + out_b * wb[..., None]) / total[..., None]
    return out, peak + jnp.log(total)


# The ring merges partial results by their log-sum-exp, which cuDNN and splash do not expose:
# their ring blocks run our flash kernel of the same platform.
RING_LSE_IMPL = {"cudnn": "pallas", "splash": "pallas", "splash_interpret": "pallas_tpu_interpret"}


def ring_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, kv_lengths: jax.Array, axis: str, axis_size: int, impl: str = "xla",
    key_block: int | None = None,
) -> jax.Array:
    """Inside shard_map: q, k, v are this device's contiguous blocks (B, Lc, H, D) of a sequence
    split over `axis`; kv_lengths (B,) counts valid keys of the whole sequence. Each block is
    attended with `block_attention_with_lse(..., impl, key_block)`."""
    block = k.shape[1]
    impl = RING_LSE_IMPL.get(impl, impl)
    me = lax.axis_index(axis)
    shift = [(i, (i + 1) % axis_size) for i in range(axis_size)]

    def attend(k, v, owner):
        # The block's keys start at owner * block: its valid keys are the leading ones.
        return block_attention_with_lse(q, k, v, jnp.clip(kv_lengths - owner * block, 0, block), impl, key_block)

    def step(carry, hop):
        out, lse, k, v = carry
        k, v = lax.ppermute(k, axis, shift), lax.ppermute(v, axis, shift)
        # After `hop` shifts this device holds the block of device (me - hop).
        out, lse = merge_partials(out, lse, *attend(k, v, (me - hop) % axis_size))
        return (out, lse, k, v), None

    out, lse = attend(k, v, me)
    (out, _, _, _), _ = lax.scan(step, (out, lse, k, v), jnp.arange(1, axis_size))
    return out.astype(q.dtype)


def context_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    kv_lengths: jax.Array | None,
    *,
    mesh: Mesh,
    ring_axis: str | None = None,
    ulysses_axis: str | None = None,
    impl: str = "xla",
    rules: Rules = ACTIVATION_RULES,
    ring_key_block: int | None = 2048,
) -> jax.Array:
    """`attention(q, k, v, kv_lengths=...)` with the sequence split over the context mesh axes.

    q, k, v (B, L, H, D) global arrays (inside or outside jit); the batch and heads are split as
    the activation `rules` say (batch over data/fsdp, heads over tensor) where they divide.
    `ulysses_axis` and/or `ring_axis` name mesh axes; with both the sequence is split ring-major.
    The local attention is `attention(..., impl=impl)` for Ulysses alone; ring blocks use
    `attention_with_lse(..., impl=impl)` (for "cudnn" and "splash", which have no lse: see
    RING_LSE_IMPL); XLA attention there visits key chunks of `ring_key_block` (None: whole
    blocks), the flash kernels stream keys anyway.
    """
    axes = [a for a in (ring_axis, ulysses_axis) if a is not None]
    if not axes:
        raise ValueError("context_attention needs a ring_axis and/or an ulysses_axis")
    for a in axes:
        if a not in mesh.shape:
            raise ValueError(f"mesh axis {a!r} is not in the mesh {dict(mesh.shape)}")
    batch, length, heads, _ = q.shape
    if k.shape[:2] != q.shape[:2]:
        raise ValueError(f"context parallel attention is self-attention: q {q.shape} and k {k.shape} must share (B, L)")
    table = dict(rules)
    batch_spec, _, heads_spec = partition_spec(("batch", None, "heads"), (batch, length, heads), mesh, table)
    if ulysses_axis is not None:
        local_heads = heads // _ways(mesh, heads_spec)
        if local_heads % mesh.shape[ulysses_axis]:
            raise ValueError(
                f"Ulysses over {mesh.shape[ulysses_axis]} devices needs the {local_heads} heads per tensor shard to be divisible "
                f"by it; lower the Ulysses degree (use 'usp' with a smaller ulysses_degree) or use ring attention"
            )

    ways = _ways(mesh, tuple(axes))
    pad = -length % ways
    kv_lengths = valid_lengths(kv_lengths, batch, length)
    if pad:
        # Padded keys sit at positions >= length >= kv_lengths: masked like text padding.
        q, k, v = (pad_axis(x, 1, length + pad) for x in (q, k, v))

    seq_spec = tuple(axes) if len(axes) > 1 else axes[0]
    spec = PartitionSpec(batch_spec, seq_spec, heads_spec, None)
    local = functools.partial(_local_attention, ring_axis=ring_axis, ring_size=mesh.shape.get(ring_axis, 1),
                              ulysses_axis=ulysses_axis, impl=impl, key_block=ring_key_block)
    # The kernels mark their outputs' varying axes (flash.varying_like), but JAX's HLO
    # interpreter that runs the GPU kernel off-GPU cannot evaluate under check_vma (its block
    # slicing mixes varying blocks with invariant grid indices), so that test path goes without.
    run = jax.shard_map(local, mesh=mesh, in_specs=(spec, spec, spec, PartitionSpec(batch_spec)), out_specs=spec,
                        check_vma=impl != "pallas_gpu_interpret")
    return run(q, k, v, kv_lengths)[:, :length]


def _local_attention(q, k, v, kv_lengths, *, ring_axis, ring_size, ulysses_axis, impl, key_block):
    if ulysses_axis is not None:
        # Sequence shard -> head shard: each device now holds its ring block (or the whole
        # sequence) for 1/U of the heads, the sub-blocks concatenated in device order.
        q, k, v = (lax.all_to_all(x, ulysses_axis, split_axis=2, concat_axis=1, tiled=True) for x in (q, k, v))
    if ring_axis is not None:
        out = ring_attention(q, k, v, kv_lengths, ring_axis, ring_size, impl, key_block)
    else:
        out = attention(q, k, v, kv_lengths=kv_lengths, impl=impl)
    if ulysses_axis is not None:
        out = lax.all_to_all(out, ulysses_axis, split_axis=1, concat_axis=2, tiled=True)
    return out


def _ways(mesh: Mesh, entry) -> int:
    """How many shards a PartitionSpec entry (None, an axis, or a tuple of axes) makes."""
    names = () if entry is None else (entry,) if isinstance(entry, str) else entry
    return math.prod(mesh.shape[a] for a in names)
