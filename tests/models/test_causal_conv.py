"""conv3d: the CPU formulations (2D convolutions per time tap, a matmul for 1x1x1 kernels) are
the 3D convolution, values and gradients, with the VAE's strides and odd and even sizes, also
compiled with CPU_COMPILER_OPTIONS (YNNPACK's convolutions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.nn.causal_conv import CPU_COMPILER_OPTIONS, _conv3d_direct, accelerator_form, conv3d


@pytest.mark.parametrize("kernel, stride", [
    ((3, 3, 3), (1, 1, 1)),
    ((3, 3, 3), (2, 1, 1)),  # time stride
    ((3, 3, 3), (2, 2, 2)),  # the VAE's time-and-space downsampler
    ((3, 3, 3), (1, 2, 2)),  # space only
    ((1, 1, 1), (1, 1, 1)),  # shortcuts and the quant convs
    ((1, 1, 1), (2, 2, 2)),
])
@pytest.mark.parametrize("size", [(10, 12), (9, 11)])
@pytest.mark.parametrize("options", [None, CPU_COMPILER_OPTIONS])
def test_conv3d_is_the_3d_convolution(kernel, stride, size, options):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 9, *size, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((*kernel, 5, 7)), jnp.float32)
    ours = jax.jit(lambda x, w: conv3d(x, w, stride)).lower(x, w)  # a new function: jit caches traces per function
    if kernel == (3, 3, 3):
        assert ours.as_text().count("stablehlo.convolution") == 3  # one 2D convolution per time tap
    ours, reference = ours.compile(compiler_options=options)(x, w), _conv3d_direct(x, w, stride)
    assert jax.default_backend() == "cpu" and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(reference))))
    grads = [jax.grad(lambda w, f=f: jnp.sum(jnp.sin(f(x, w, stride))))(w) for f in (conv3d, _conv3d_direct)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(grads[1]))))


def test_accelerator_form_traces_the_3d_convolution_on_cpu():
    """What a memory plan compiles on a CPU host: one 3D convolution, as a GPU runs it."""
    x, w = jax.ShapeDtypeStruct((1, 19, 192, 256, 32), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 32, 32), jnp.float32)
    with accelerator_form():
        inside = jax.jit(lambda x, w: conv3d(x, w)).lower(x, w).as_text()
    outside = jax.jit(lambda x, w: conv3d(x, w)).lower(x, w).as_text()  # a new function: jit caches traces per function
    assert inside.count("stablehlo.convolution") == 1 and "stablehlo.case" not in inside
    assert outside.count("stablehlo.convolution") == 3  # CPU: one 2D convolution per time tap
