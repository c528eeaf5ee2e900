"""conv3d: the CPU formulations (one 2D convolution with the time taps stacked in its output for
causal stride-1 convolutions, 2D convolutions per time tap otherwise, a matmul for 1x1x1
kernels) are the 3D convolution of the causally padded input, values and gradients, with the
VAE's strides, odd and even sizes and clips shorter than the kernel, also compiled with
CPU_COMPILER_OPTIONS (YNNPACK's convolutions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.nn.backend_form import accelerator_form
from hyv_jax.nn.causal_conv import (
    CPU_COMPILER_OPTIONS,
    _conv3d_direct,
    conv3d,
    pad_time,
    replicate_pad_space,
)


def _reference(x, w, stride, time_pad):
    return _conv3d_direct(jnp.pad(x, ((0, 0), (time_pad, 0), (0, 0), (0, 0), (0, 0)), mode="edge"), w, stride)


LAYERS = [
    ((3, 3, 3), (1, 1, 1), 0),
    ((3, 3, 3), (1, 1, 1), 2),  # causal: the stacked-taps form
    ((3, 3, 3), (1, 2, 2), 2),  # causal, space stride
    ((3, 3, 3), (2, 1, 1), 2),  # time stride: per tap
    ((3, 3, 3), (2, 2, 2), 2),  # the VAE's time-and-space downsampler
    ((3, 3, 3), (1, 2, 2), 0),  # space only
    ((1, 3, 3), (1, 1, 1), 0),  # one time tap: stacked, nothing to shift
    ((1, 1, 1), (1, 1, 1), 0),  # shortcuts and the quant convs
    ((1, 1, 1), (2, 2, 2), 0),
]
# clips of 1 and 2 frames (shorter than the kernel) only where the padding gives an output frame
INPUTS = [(9, (10, 12)), (9, (9, 11)), (1, (6, 7)), (2, (6, 7))]


@pytest.mark.parametrize("kernel, stride, time_pad, frames, size", [
    (*layer, *shape) for layer in LAYERS for shape in INPUTS if shape[0] + layer[2] >= layer[0][0]
])
@pytest.mark.parametrize("options", [None, CPU_COMPILER_OPTIONS])
def test_conv3d_is_the_3d_convolution(kernel, stride, time_pad, frames, size, options):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, frames, *size, 5)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((*kernel, 5, 7)), jnp.float32)
    ours = jax.jit(lambda x, w: conv3d(x, w, stride, time_pad)).lower(x, w)  # a new function: jit caches traces per function
    if kernel != (1, 1, 1):
        stacked = time_pad == kernel[0] - 1 and stride[0] == 1
        assert ours.as_text().count("stablehlo.convolution") == (1 if stacked else kernel[0])
    ours, reference = ours.compile(compiler_options=options)(x, w), _reference(x, w, stride, time_pad)
    assert jax.default_backend() == "cpu" and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(reference))))
    grads = [jax.grad(lambda w, f=f: jnp.sum(jnp.sin(f(x, w))))(w)
             for f in (lambda x, w: conv3d(x, w, stride, time_pad), lambda x, w: _reference(x, w, stride, time_pad))]
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(grads[1]))))


def test_pad_time_repeats_the_first_frame():
    x = jnp.arange(3.0).reshape(1, 3, 1, 1, 1)
    assert pad_time(x, 2).ravel().tolist() == [0, 0, 0, 1, 2] and pad_time(x, 0) is x


def test_accelerator_form_traces_the_3d_convolution_on_cpu():
    """What a memory plan compiles on a CPU host: one 3D convolution, as a GPU runs it."""
    x, w = jax.ShapeDtypeStruct((1, 19, 192, 256, 32), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 32, 32), jnp.float32)
    with accelerator_form():
        inside = jax.jit(lambda x, w: conv3d(x, w, time_pad=2)).lower(x, w).as_text()
    outside = jax.jit(lambda x, w: conv3d(x, w, time_pad=2)).lower(x, w).as_text()  # a new function: jit caches traces per function
    assert inside.count("stablehlo.convolution") == 1 and "stablehlo.case" not in inside
    assert "[b, 0, 1, 2, f]" in inside  # 3D
    assert outside.count("stablehlo.convolution") == 1 and "[b, 0, 1, f]" in outside  # CPU: the stacked taps' 2D convolution


@pytest.mark.parametrize("p, size", [(1, (4, 5)), (2, (3, 6)), (1, (1, 1))])
def test_replicate_pad_space_is_jnp_pad_edge(p, size):
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 3, *size, 4)), jnp.float32)
    expected = jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), mode="edge")
    np.testing.assert_array_equal(jax.jit(lambda x: replicate_pad_space(x, p))(x), expected)
    grads = [jax.grad(lambda x, f=f: jnp.sum(jnp.sin(f(x)) * expected))(x)
             for f in (lambda x: replicate_pad_space(x, p), lambda x: jnp.pad(x, ((0, 0), (0, 0), (p, p), (p, p), (0, 0)), mode="edge"))]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6)
    with accelerator_form():  # GPU/TPU: jnp.pad's own padding, no gather
        assert "gather" not in jax.jit(lambda x: replicate_pad_space(x, p)).lower(x).as_text()
    assert replicate_pad_space(x, 0) is x
