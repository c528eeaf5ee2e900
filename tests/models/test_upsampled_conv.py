"""upsampled_causal_conv3d: on CPU the output phases' 2-tap convolutions of the low-resolution
input are the causal 3x3x3 convolution of the nearest-upsampled, replication-padded video
(values and gradients, every factor the VAE uses and more, clips of 1, 2 and 4 frames, odd
sizes, with and without CPU_COMPILER_OPTIONS); GPU and TPU (accelerator_form) convolve the
upsampled video once."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.nn.backend_form import accelerator_form
from hyv_jax.nn.causal_conv import CPU_COMPILER_OPTIONS, _conv3d_direct
from hyv_jax.nn.upsampled_conv import upsampled_causal_conv3d


def _reference(x, k, factor):
    """What upstream computes: F.interpolate(nearest) (the first frame in space only), the
    causal conv's replicate padding, a 3D convolution."""
    ft, fh, fw = factor
    up = jnp.repeat(jnp.repeat(x, fh, axis=2), fw, axis=3)
    up = jnp.concatenate([up[:, :1], jnp.repeat(up[:, 1:], ft, axis=1)], axis=1)
    return _conv3d_direct(jnp.pad(up, ((0, 0), (2, 0), (1, 1), (1, 1), (0, 0)), mode="edge"), k, (1, 1, 1))


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 2), (2, 1, 1), (2, 1, 2), (1, 1, 1)])
@pytest.mark.parametrize("frames", [1, 2, 4])
@pytest.mark.parametrize("options", [None, CPU_COMPILER_OPTIONS])
def test_phases_are_the_convolution_of_the_upsampled_video(factor, frames, options):
    rng = np.random.default_rng(frames)
    x = jnp.asarray(rng.standard_normal((2, frames, 5, 7, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 3, 4)), jnp.float32)
    lowered = jax.jit(lambda x, k: upsampled_causal_conv3d(x, k, factor)).lower(x, k)
    text = lowered.as_text()
    phases = (2 if factor[1] == 2 else 1) * (2 if factor[2] == 2 else 1)
    assert text.count("stablehlo.convolution") == phases and "[b, 0, 1, f]" in text  # 2D, one per output phase
    ours, reference = lowered.compile(compiler_options=options)(x, k), _reference(x, k, factor)
    assert ours.shape == reference.shape == (2, 1 + factor[0] * (frames - 1), 5 * factor[1], 7 * factor[2], 4)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(reference))))
    grads = [jax.grad(lambda x, k, f=f: jnp.sum(jnp.sin(f(x, k))), argnums=(0, 1))(x, k)
             for f in (lambda x, k: upsampled_causal_conv3d(x, k, factor), lambda x, k: _reference(x, k, factor))]
    for ours_grad, reference_grad in zip(*grads, strict=True):
        np.testing.assert_allclose(ours_grad, reference_grad, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(reference_grad))))


def test_accelerator_form_convolves_the_upsampled_video():
    x, k = jax.ShapeDtypeStruct((1, 9, 48, 32, 64), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 64, 64), jnp.float32)
    with accelerator_form():
        text = jax.jit(lambda x, k: upsampled_causal_conv3d(x, k, (2, 2, 2))).lower(x, k).as_text()
    assert text.count("stablehlo.convolution") == 1 and "[b, 0, 1, 2, f]" in text and "x96x64x64xf32" in text


def test_other_kernels_and_factors_are_refused():
    x, k = jnp.zeros((1, 2, 4, 4, 3)), jnp.zeros((3, 3, 3, 3, 3))
    with pytest.raises(ValueError, match="factors of 1 or 2"):
        upsampled_causal_conv3d(x, k, (1, 3, 3))
    with pytest.raises(ValueError, match="3x3x3 kernel"):
        upsampled_causal_conv3d(x, jnp.zeros((1, 3, 3, 3, 3)), (2, 2, 2))
