"""The shifted flow schedule against diffusers' FlowMatchEulerDiscreteScheduler and upstream's
torch.linspace arithmetic, and the Euler step against the scheduler's step."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from hyv_jax.sampling.euler import euler_step
from hyv_jax.sampling.schedule import FlowSchedule, linspace_1_to_0


@pytest.mark.parametrize("steps, shift", [(1, 7.0), (4, 7.0), (50, 7.0), (30, 17.0), (50, 1.0)])
def test_schedule_equals_diffusers(steps, shift):
    ref = FlowMatchEulerDiscreteScheduler(shift=shift)
    ref.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1])  # what HunyuanVideoPipeline passes
    ours = FlowSchedule.create(steps, shift, "diffusers")
    assert ours.sigmas.dtype == ours.timesteps.dtype == np.float32
    np.testing.assert_array_equal(ours.sigmas, ref.sigmas.numpy())
    np.testing.assert_array_equal(ours.timesteps, ref.timesteps.numpy())


@pytest.mark.parametrize("steps, shift", [(4, 7.0), (50, 7.0), (129, 5.0)])
def test_schedule_equals_upstream_torch_arithmetic(steps, shift):
    # upstream FlowMatchDiscreteScheduler: torch.linspace in float32, sd3_time_shift, sigmas[:-1] * 1000
    sigmas = torch.linspace(1, 0, steps + 1)
    sigmas = (shift * sigmas) / (1 + (shift - 1) * sigmas)
    ours = FlowSchedule.create(steps, shift)
    np.testing.assert_array_equal(ours.sigmas, sigmas.numpy())
    np.testing.assert_array_equal(ours.timesteps, (sigmas[:-1] * 1000).numpy())


def test_the_two_spacings_differ_by_at_most_an_ulp():
    official, diffusers = linspace_1_to_0(51, "official"), linspace_1_to_0(51, "diffusers")
    assert not np.array_equal(official, diffusers)  # 9 of 51 values at 50 steps
    np.testing.assert_array_less(np.abs(official - diffusers), 6e-8 + 1e-12)


def test_torch_linspace_emulation_over_many_lengths():
    for n in range(2, 400):
        np.testing.assert_array_equal(linspace_1_to_0(n), torch.linspace(1, 0, n).numpy(), err_msg=f"n={n}")


def test_euler_step_equals_diffusers_step():
    ref = FlowMatchEulerDiscreteScheduler(shift=7.0)
    ref.set_timesteps(sigmas=np.linspace(1.0, 0.0, 6)[:-1])
    schedule = FlowSchedule.create(5, 7.0, "diffusers")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    ref.set_begin_index(0)
    for i, t in enumerate(ref.timesteps):
        v = rng.standard_normal(x.shape).astype(np.float32)
        expected = ref.step(torch.from_numpy(v), t, torch.from_numpy(x), return_dict=False)[0].numpy()
        x_next = np.array(euler_step(x, v, schedule.sigmas[i], schedule.sigmas[i + 1]))
        np.testing.assert_array_equal(x_next, expected)
        x = x_next


def test_bad_schedules():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        FlowSchedule.create(0, 7.0)
    with pytest.raises(ValueError, match="shift must be > 0"):
        FlowSchedule.create(10, 0.0)
    with pytest.raises(ValueError, match="unknown sigma spacing"):
        FlowSchedule.create(10, 7.0, "karras")
