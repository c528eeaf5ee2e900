"""JAX's splash attention behind our convention, run interpreted on CPU, against XLA."""

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from attention_cases import check_kernel, random_inputs

from hyv_jax.attention.splash import segment_ids, splash_attention


def test_segment_ids_cut_off_padded_keys():
    ids = segment_ids(jnp.array([3, 0, 5]), 4, 5)
    np.testing.assert_array_equal(ids.q, np.zeros((3, 4)))
    np.testing.assert_array_equal(ids.kv, [[0, 0, 0, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matches_xla(dtype):
    # 200 = 1.6 blocks of 128, padded inside; lengths: all keys and mid-block.
    q, k, v, d_out, _ = random_inputs(0, 2, 200, 200, 1, 32, dtype)
    kernel = functools.partial(splash_attention, block=128, interpret=True)
    check_kernel("splash", kernel, q, k, v, jnp.array([200, 70]), d_out)


def test_needs_a_tpu():
    q = jnp.zeros((1, 8, 1, 16))
    with pytest.raises(ValueError, match="TPU only"):
        splash_attention(q, q, q)
