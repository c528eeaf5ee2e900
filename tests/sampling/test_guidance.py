"""Guidance arithmetic as upstream: true CFG combined on the model's bf16 output with every op
rounded to bf16 (the scale itself kept in float32, as torch's scalar ops do)."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch

from hyv_jax.sampling.guidance import combine_cfg


@pytest.mark.parametrize("scale", [7.5, 6.0, 1.45, 3.05, 6.1])
def test_cfg_combination_in_bf16_equals_upstream(scale):
    rng = np.random.default_rng(0)
    velocity = (rng.standard_normal((2, 3, 8, 8, 16)) * 2).astype(ml_dtypes.bfloat16)
    got = np.asarray(jax.jit(combine_cfg)(jnp.asarray(velocity), jnp.float32(scale)))
    assert got.dtype == ml_dtypes.bfloat16
    # pipeline_hunyuan_video.py:1007-1010 on the bf16 transformer output
    uncond, text = torch.from_numpy(velocity.view(np.int16)).view(torch.bfloat16).chunk(2)
    expected = uncond + scale * (text - uncond)
    np.testing.assert_array_equal(got.view(np.int16), expected.view(torch.int16).numpy())


def test_cfg_combination_in_float32_is_the_float32_formula():
    rng = np.random.default_rng(1)
    velocity = rng.standard_normal((4, 2, 4, 4, 8)).astype(np.float32)
    got = np.asarray(jax.jit(combine_cfg)(velocity, jnp.float32(4.5)))
    negative, positive = velocity[:2], velocity[2:]
    assert got.dtype == np.float32  # (XLA may fuse a multiply-add: an ulp apart)
    np.testing.assert_allclose(got, negative + np.float32(4.5) * (positive - negative), rtol=1e-6, atol=1e-6)


def test_image_cfg_combination_equals_upstream():
    """pipeline_hunyuan_video_custom.py:967-969,1035-1038 over a bf16 [uncond, text, ip] output."""
    from hyv_jax.sampling.guidance import combine_ip_cfg, ip_cfg_scales

    steps, start = 30, 3.0
    scales = ip_cfg_scales(start, steps)
    expected_scales, s = [], start
    for _ in range(steps):
        expected_scales.append(s)
        s -= (start - 1.0) / (steps - 1 + 1e-3)
    np.testing.assert_array_equal(scales, np.array(expected_scales, np.float32))
    assert scales[0] == 3.0 and 1.0 < scales[-1] < 1.001
    rng = np.random.default_rng(2)
    velocity = (rng.standard_normal((3, 2, 4, 4, 16)) * 2).astype(ml_dtypes.bfloat16)
    uncond, text, ip = torch.from_numpy(velocity.view(np.int16)).view(torch.bfloat16).chunk(3)
    for i in (0, 7, 29):
        got = np.asarray(jax.jit(combine_ip_cfg)(jnp.asarray(velocity), jnp.float32(7.5), scales[i]))
        expected = uncond + 7.5 * (text - uncond) + expected_scales[i] * (ip - text)
        np.testing.assert_array_equal(got.view(np.int16), expected.view(torch.int16).numpy())


@pytest.mark.parametrize("scale", [6.0, 1.45, 3.05, 5.55, 6.1, 1.0])
def test_embedded_guidance_is_the_scale_in_the_model_dtype_times_1000(scale):
    from hyv_jax.sampling.guidance import embedded_guidance

    # pipeline_hunyuan_video.py:976-982 with target_dtype bf16
    expected = (torch.tensor([scale] * 2, dtype=torch.float32).to(torch.bfloat16) * 1000.0).float().numpy()
    np.testing.assert_array_equal(embedded_guidance(scale, 2, "bfloat16"), expected)
    np.testing.assert_array_equal(embedded_guidance(scale, 2, "float32"), np.float32(scale) * np.float32(1000.0))
    assert embedded_guidance(None, 2, "bfloat16") is None


class _Velocity:
    """A policy whose velocity is a fixed array (the model batch's), to check the step's combination."""

    def __init__(self, velocity):
        self.v = velocity

    def velocity(self, model, x, t, conditions, parallel, carry):
        assert x.shape[0] == self.v.shape[0]
        return self.v, carry


def test_the_step_combines_three_branches_with_the_steps_image_scale():
    from hyv_jax.sampling.denoise import StepConditions, denoise_step
    from hyv_jax.sampling.guidance import combine_ip_cfg

    rng = np.random.default_rng(3)
    latents = jnp.asarray(rng.standard_normal((1, 2, 4, 4, 8)), jnp.float32)
    velocity = jnp.asarray(rng.standard_normal((3, 2, 4, 4, 8)), jnp.bfloat16)
    conditions = StepConditions(jnp.zeros((3, 5, 8)), jnp.ones((3, 5), jnp.int32), jnp.zeros((3, 4)), None, jnp.float32(7.5), {})
    out, _ = denoise_step(None, _Velocity(velocity), None, latents, 1000.0, 1.0, 0.5, conditions, (), jnp.float32(2.5))
    expected = latents + combine_ip_cfg(velocity, 7.5, 2.5).astype(jnp.float32) * (0.5 - 1.0)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
