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
from hyv_jax.parallel.processes import barrier, to_host
from hyv_jax.persistent_cache import PersistentProgram, signature
from hyv_jax.sampling.euler import euler_step
from hyv_jax.sampling.guidance import combine_cfg, combine_ip_cfg
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
                 conditions: StepConditions, carry, ip_scale=None):
    """latents_i -> latents_{i+1}. With conditions for 2B samples and B latents the batch is
    [negative, positive] and true CFG combines the two halves; with 3B, HunyuanCustom's image CFG
    [negative, positive with a white reference, positive] combines the thirds with this step's
    `ip_scale`."""
    copies = conditions.text_states.shape[0] // latents.shape[0]
    x = jnp.concatenate([latents] * copies) if copies > 1 else latents
    velocity, carry = policy.velocity(model, x, jnp.broadcast_to(t, (x.shape[0],)), conditions, parallel, carry)
    if copies == 2:
        velocity = combine_cfg(velocity, conditions.cfg_scale)
    elif copies == 3:
        velocity = combine_ip_cfg(velocity, conditions.cfg_scale, ip_scale)
    return euler_step(latents, velocity, sigma, sigma_next), carry


class NonFiniteLatents(ValueError):
    """The latents became NaN or infinite: decoding them would give a black or garbage video."""


class CompiledStep:
    """`denoise_step` of one model graph, policy and plan, jitted over the split state, returning
    also whether the new latents are all finite (one reduction); `traces` counts how often it was
    traced (once per input shapes). With several processes each new input signature is compiled
    ahead and the processes meet at a barrier before running it: a process that found the
    program in the persistent cache must not wait for the others inside the first collective
    (CPU collectives give up after 30 s)."""

    def __init__(self, graphdef: nnx.GraphDef, policy: VelocityPolicy, parallel: ParallelPlan | None = None):
        self.traces = 0
        self._executables: dict = {}  # multi-process: input signature -> compiled step

        def step(state, latents, t, sigma, sigma_next, conditions, carry, ip_scale):
            self.traces += 1
            latents, carry = denoise_step(nnx.merge(graphdef, state), policy, parallel, latents, t, sigma, sigma_next,
                                          conditions, carry, ip_scale)
            return latents, carry, jnp.isfinite(latents).all()

        # single-process runs with the compilation cache on load it in later processes untraced;
        # the graph, policy and plan key it once, not hashed at every step
        self._program = PersistentProgram(step, "denoise_step", bound=(graphdef, policy, parallel))

    def __call__(self, state, latents, t, sigma, sigma_next, conditions: StepConditions, carry, ip_scale=np.float32(0.0)):
        """-> (latents, carry, all latents finite). ip_scale: the image-CFG scale of this step
        (read with a 3B conditions batch only)."""
        args = (state, latents, t, sigma, sigma_next, conditions, carry, np.float32(ip_scale))
        if jax.process_count() == 1:
            return self._program(*args)
        key = signature(args)
        if key not in self._executables:
            self._executables[key] = self._program.lower(*args).compile()
            barrier("compiled denoising step")
        return self._executables[key](*args)

    def lower(self, state, latents, t, sigma, sigma_next, conditions: StepConditions, carry) -> jax.stages.Lowered:
        """The step lowered for these (abstract or real) arguments, for memory plans."""
        return self._program.lower(state, latents, t, sigma, sigma_next, conditions, carry, np.float32(0.0))


def denoise(step: CompiledStep, state, noise: jax.Array, schedule: FlowSchedule, conditions: StepConditions, carry=(), *,
            progress: bool = True, ip_scales: np.ndarray | None = None):
    """Integrates the flow from `noise` (B, T, H, W, C) float32 at sigma 1 to latents at sigma 0
    -> (latents, final carry). `conditions` hold B samples, 2B as [negative, positive], or 3B for
    image CFG with `ip_scales` (one per step). Stops with NonFiniteLatents, naming the step, as
    soon as a step gives NaN or infinity."""
    batch = noise.shape[0]
    if conditions.text_states.shape[0] not in (batch, 2 * batch, 3 * batch):
        raise ValueError(f"text batch {conditions.text_states.shape[0]} must be the video batch {batch}, twice it "
                         "([negative, positive]) for CFG, or three times it for image CFG")
    if (conditions.text_states.shape[0] == 3 * batch) != (ip_scales is not None):
        raise ValueError("image CFG needs both the [negative, positive, positive] batch and its per-step scales")
    latents = noise
    sigmas, timesteps = schedule.sigmas, schedule.timesteps
    for i in tqdm(range(schedule.steps), desc="denoising", unit="step", disable=not progress):
        latents, carry, finite = step(state, latents, np.float32(timesteps[i]), np.float32(sigmas[i]),
                                      np.float32(sigmas[i + 1]), conditions, carry, 0.0 if ip_scales is None else ip_scales[i])
        # reading the flag blocks each step, which also makes the bar's rate the real compute rate
        if not bool(to_host(finite)):
            raise NonFiniteLatents(
                f"the latents became NaN or infinite at denoising step {i + 1} of {schedule.steps} (sigma {sigmas[i]:.3f}); "
                f"nothing was decoded. Usual causes: weights that overflow the compute dtype (try --precision bf16 or "
                f"fp32), extreme guidance or shift values, or a damaged checkpoint")
    return latents, carry
