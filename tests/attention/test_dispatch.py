"""attention(): which implementation runs, and the errors off their platform."""

import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from attention_cases import check_kernel, random_inputs, reference_with_lse
from helpers import report

from hyv_jax.attention import attention, attention_with_lse
from hyv_jax.attention.xla import xla_attention

LENGTHS = jnp.array([24, 9])


@pytest.fixture(scope="module")
def inputs():
    return random_inputs(0, 2, 24, 24, 2, 16, jnp.float32)[:3]


def test_xla_combines_lengths_and_mask(inputs):
    q, k, v = inputs
    kv_mask = jnp.array([[True, False] * 12, [False] * 4 + [True] * 20])
    ours = attention(q, k, v, kv_lengths=LENGTHS, kv_mask=kv_mask, impl="xla")
    expected = xla_attention(q, k, v, kv_mask & (jnp.arange(24)[None, :] < LENGTHS[:, None]))
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("impl", ["pallas_gpu_interpret", "pallas_tpu_interpret", "splash_interpret"])
def test_interpreted_kernels_match_xla(inputs, impl):
    q, k, v = inputs
    _, rel = report(impl, attention(q, k, v, kv_lengths=LENGTHS, impl=impl), reference_with_lse(q, k, v, LENGTHS)[0])
    assert rel < 2e-5


def test_key_mask_goes_to_xla(inputs):
    """A kernel cannot take an arbitrary key mask: the call runs XLA attention instead."""
    q, k, v = inputs
    kv_mask = jnp.array([[True, False] * 12] * 2)
    ours = attention(q, k, v, kv_mask=kv_mask, impl="pallas_gpu_interpret")
    np.testing.assert_array_equal(ours, xla_attention(q, k, v, kv_mask))


def test_auto_is_xla_on_cpu(inputs):
    q, k, v = inputs
    assert jax.default_backend() == "cpu"
    np.testing.assert_array_equal(attention(q, k, v, kv_lengths=LENGTHS, impl="auto"),
                                  attention(q, k, v, kv_lengths=LENGTHS, impl="xla"))


@pytest.mark.parametrize("impl, message", [("cudnn", "needs a GPU"), ("pallas", "kernels for GPU and TPU"),
                                           ("splash", "TPU only"), ("flash", "unknown attention impl")])
def test_errors_off_platform(inputs, impl, message):
    q, k, v = inputs
    with pytest.raises(ValueError, match=message):
        attention(q, k, v, kv_lengths=LENGTHS, impl=impl)


@pytest.mark.parametrize("impl", ["xla", "pallas_gpu_interpret"])
def test_attention_with_lse(impl):
    """Output, lse and the gradients through both against the logsumexp reference; one sample
    without valid keys."""
    q, k, v, d_out, d_lse = random_inputs(3, 3, 24, 24, 2, 16, jnp.float32)
    kernel = functools.partial(_with_lse, impl=impl)
    check_kernel(f"attention_with_lse[{impl}]", kernel, q, k, v, jnp.array([24, 9, 0]), d_out, d_lse)


def _with_lse(q, k, v, kv_lengths, impl):
    return attention_with_lse(q, k, v, kv_lengths=kv_lengths, impl=impl)


def test_with_lse_rejects_impls_without_an_lse(inputs):
    q, k, v = inputs
    with pytest.raises(ValueError, match="unknown attention impl 'splash'"):
        attention_with_lse(q, k, v, impl="splash")


def test_kernels_import_on_first_use():
    """sample.py on a CPU imports the attention table but never a Pallas lowering (~0.2 s of
    every run's start); the interpreted kernel then imports its module when called."""
    code = ("import sys, jax.numpy as jnp; from hyv_jax.attention import attention; "
            "lowerings = ('jax._src.pallas.triton.lowering', 'jax._src.pallas.mosaic.lowering'); "
            "before = [m for m in lowerings if m in sys.modules]; q = jnp.ones((1, 8, 1, 8)); "
            "attention(q, q, q, impl='pallas_gpu_interpret'); print(before, 'hyv_jax.attention.pallas_gpu' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.split("\n")[-2] == "[] True", result.stderr[-2000:]
