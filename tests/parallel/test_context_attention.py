"""Context-parallel attention (Ulysses, ring, USP) on 8 simulated CPU devices equals plain
attention, forward and gradients, for a length no device count divides and varied valid key
lengths per sample; also with our Pallas kernels (interpreted) as the local attention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import report

from hyv_jax.attention import attention
from hyv_jax.attention.context_parallel import context_attention
from hyv_jax.parallel.mesh import mesh_from_config

B, L, HEADS, D = 2, 37, 8, 8
KV_LENGTHS = np.array([23, 37], np.int32)  # a padded tail, and none

CASES = {
    "ulysses8": ({"mesh": {"context": 8}, "context_strategy": "ulysses"}, dict(ulysses_axis="context")),
    # Heads split over tensor first, then the 4 heads per tensor shard over Ulysses.
    "ulysses4_tensor2": ({"mesh": {"context": 4, "tensor": 2}, "context_strategy": "ulysses"}, dict(ulysses_axis="context")),
    "ring8": ({"mesh": {"context": 8}, "context_strategy": "ring"}, dict(ring_axis="context")),
    "usp_ring2_ulysses2_data2": (
        {"mesh": {"data": 2, "context": 4}, "context_strategy": "usp", "ulysses_degree": 2},
        dict(ring_axis="context_ring", ulysses_axis="context"),
    ),
    # Ring blocks of 10 keys visited in chunks of 4 (the last one padded).
    "usp_chunked_keys": (
        {"mesh": {"context": 8}, "context_strategy": "usp", "ulysses_degree": 2},
        dict(ring_axis="context_ring", ulysses_axis="context", ring_key_block=4),
    ),
    # Our Pallas GPU kernel (interpreted) inside shard_map: as the Ulysses local attention, and
    # as the ring's per-block attention with lse (per-block valid lengths, lse merges).
    "ulysses8_pallas": ({"mesh": {"context": 8}, "context_strategy": "ulysses"},
                        dict(ulysses_axis="context", impl="pallas_gpu_interpret")),
    # The TPU interpreter runs under check_vma, as the compiled kernels do.
    "ulysses8_pallas_tpu": ({"mesh": {"context": 8}, "context_strategy": "ulysses"},
                            dict(ulysses_axis="context", impl="pallas_tpu_interpret")),
    "ring8_pallas": ({"mesh": {"context": 8}, "context_strategy": "ring"}, dict(ring_axis="context", impl="pallas_gpu_interpret")),
}


def value_and_grads(attend, q, k, v, cotangent):
    """Output and d<out, cotangent>/d(q, k, v) in one compiled function."""
    def loss(q, k, v):
        out = attend(q, k, v)
        return jnp.sum(out * cotangent), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
    return out, grads


@pytest.fixture(scope="module")
def inputs():
    keys = jax.random.split(jax.random.key(0), 4)
    return tuple(jax.random.normal(key, (B, L, HEADS, D), jnp.float32) for key in keys)


@pytest.fixture(scope="module")
def reference(inputs):
    q, k, v, cotangent = inputs
    return value_and_grads(lambda q, k, v: attention(q, k, v, kv_lengths=jnp.asarray(KV_LENGTHS)), q, k, v, cotangent)


@pytest.mark.parametrize("case", sorted(CASES))
def test_context_attention_matches_plain_attention(case, inputs, reference):
    parallel, axes = CASES[case]
    mesh = mesh_from_config(parallel)
    q, k, v, cotangent = inputs
    out, grads = value_and_grads(
        lambda q, k, v: context_attention(q, k, v, jnp.asarray(KV_LENGTHS), mesh=mesh, **axes), q, k, v, cotangent
    )
    ref_out, ref_grads = reference
    assert report(f"{case} out", out, ref_out)[1] < 1e-5
    for name, g, r in zip("qkv", grads, ref_grads):
        assert report(f"{case} d{name}", g, r)[1] < 1e-5
    # Keys past kv_lengths are ignored: their gradients are exactly zero.
    assert not np.any(np.asarray(grads[1])[0, KV_LENGTHS[0]:])


def test_ulysses_rejects_indivisible_heads(inputs):
    q, k, v, _ = inputs
    mesh = mesh_from_config({"mesh": {"context": 8}, "context_strategy": "ulysses"})
    with pytest.raises(ValueError, match="Ulysses over 8 devices"):
        context_attention(q[:, :, :6], k[:, :, :6], v[:, :, :6], None, mesh=mesh, ulysses_axis="context")
