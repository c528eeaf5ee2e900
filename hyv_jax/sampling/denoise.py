"""The denoising loop: one pure step

    step(state, latents, t, sigma, sigma_next, conditions, carry) -> (latents, carry)

jitted once per (model graph, velocity policy, parallel plan) and reused for every step and
every run (timestep and sigmas enter as float32 scalars, so neither the step nor the number of
steps retraces). How the velocity is computed is the policy's: the whole model, or a cache
(First Block Cache, HunyuanCustom's step cache) whose state travels in `carry`.
"""

import dataclasses
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.sampling.euler import euler_step
from hyv_jax.sampling.guidance import combine_cfg
from hyv_jax.sampling.schedule import FlowSchedule


class StepConditions(NamedTuple):
    """What the transformer is conditioned on, fixed over the steps, in the model batch: B
    samples, or 2B as [negative, positive] for true CFG (the step doubles the latents)."""

    text_states: jax.Array  # (b, L, D)
    text_mask: jax.Array  # (b, L)
    pooled: jax.Array  # (b, D2)
    guidance: jax.Array | None  # (b,) embedded guidance * 1000, or None for models without it
    cfg_scale: jax.Array  # () float32, read when the batch is doubled
    model: dict  # the variant's further inputs (HunyuanCustom: ref_latents, bg_latents, ...)

    def prepare(self, model, x, t, parallel: ParallelPlan | None):
        """The model's first stage on these conditions (for policies that run it in stages)."""
        return model.prepare(x, t, self.text_states, self.text_mask, self.pooled, self.guidance, parallel, **self.model)

    def forward(self, model, x, t, parallel: ParallelPlan | None) -> jax.Array:
        return model(x, t, self.text_states, self.text_mask, self.pooled, self.guidance, parallel, **self.model)

    def image_tokens_shape(self, model, x_shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
        """Shape and dtype of the image tokens of a model batch of latents `x_shape` (no compute)."""
        graphdef, state = nnx.split(model)  # as arguments, so abstract models and conditions work too

        def image_tokens(state, conditions):
            return conditions.prepare(nnx.merge(graphdef, state), jnp.zeros(x_shape), jnp.zeros(x_shape[:1]), None).img

        return jax.eval_shape(image_tokens, state, self)


class VelocityPolicy(Protocol):
    """How a step gets the velocity of the model batch x; its state is the carry (a pytree of
    arrays, the same structure every step). Policies are hashable: they key the compiled step."""

    def velocity(self, model, x, t, conditions: StepConditions, parallel: ParallelPlan | None, carry):
        """-> (velocity, next carry)"""

    def full_steps(self, carry, steps: int) -> int:
        """How many of the `steps` ran every block, from the final carry."""


@dataclasses.dataclass(frozen=True)
class FullModel:
    """Every step runs the whole model; the carry is empty."""

    def velocity(self, model, x, t, conditions, parallel, carry):
        return conditions.forward(model, x, t, parallel), carry

    @staticmethod
    def full_steps(carry, steps: int) -> int:
        return steps


def denoise_step(model, policy: VelocityPolicy, parallel: ParallelPlan | None, latents, t, sigma, sigma_next,
                 conditions: StepConditions, carry):
    """latents_i -> latents_{i+1}. With conditions for 2B samples and B latents the batch is
    [negative, positive] and true CFG combines the two halves."""
    true_cfg = conditions.text_states.shape[0] == 2 * latents.shape[0]
    x = jnp.concatenate([latents, latents]) if true_cfg else latents
    velocity, carry = policy.velocity(model, x, jnp.broadcast_to(t, (x.shape[0],)), conditions, parallel, carry)
    if true_cfg:
        velocity = combine_cfg(velocity, conditions.cfg_scale)
    return euler_step(latents, velocity, sigma, sigma_next), carry


class CompiledStep:
    """`denoise_step` of one model graph, policy and plan, jitted over the split state; `traces`
    counts how often it was traced (once per input shapes)."""

    def __init__(self, graphdef: nnx.GraphDef, policy: VelocityPolicy, parallel: ParallelPlan | None = None):
        self.traces = 0

        def step(state, latents, t, sigma, sigma_next, conditions, carry):
            self.traces += 1
            return denoise_step(nnx.merge(graphdef, state), policy, parallel, latents, t, sigma, sigma_next, conditions, carry)

        self._jitted = jax.jit(step)

    def __call__(self, state, latents, t, sigma, sigma_next, conditions: StepConditions, carry):
        return self._jitted(state, latents, t, sigma, sigma_next, conditions, carry)

    def lower(self, state, latents, t, sigma, sigma_next, conditions: StepConditions, carry) -> jax.stages.Lowered:
        """The step lowered for these (abstract or real) arguments, for memory plans."""
        return self._jitted.lower(state, latents, t, sigma, sigma_next, conditions, carry)


def denoise(step: CompiledStep, state, noise: jax.Array, schedule: FlowSchedule, conditions: StepConditions, carry=(), *,
            progress: bool = True):
    """Integrates the flow from `noise` (B, T, H, W, C) float32 at sigma 1 to latents at sigma 0
    -> (latents, final carry). `conditions` hold B samples, or 2B as [negative, positive]."""
    batch = noise.shape[0]
    if conditions.text_states.shape[0] not in (batch, 2 * batch):
        raise ValueError(f"text batch {conditions.text_states.shape[0]} must be the video batch {batch}, or twice it "
                         "([negative, positive]) for CFG")
    latents = noise
    sigmas, timesteps = schedule.sigmas, schedule.timesteps
    for i in tqdm(range(schedule.steps), desc="denoising", unit="step", disable=not progress):
        latents, carry = step(state, latents, np.float32(timesteps[i]), np.float32(sigmas[i]), np.float32(sigmas[i + 1]),
                              conditions, carry)
        # blocking each step makes the bar's rate the real compute rate (dispatch is async)
        latents.block_until_ready()
    return latents, carry
