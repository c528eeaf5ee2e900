"""The denoising loop: one Euler step of the transformer's flow, compiled once and reused for
every step (jax.jit over the split (graphdef, state); timestep and sigmas enter as float32
scalars, so neither the step nor the number of steps retraces), with a progress bar showing
the step rate."""

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from hyv_jax.models.transformer import HunyuanVideoTransformer
from hyv_jax.sampling.euler import euler_step
from hyv_jax.sampling.guidance import combine_cfg
from hyv_jax.sampling.schedule import FlowSchedule

if TYPE_CHECKING:
    from hyv_jax.models.text.text_encoder import PromptEmbeddings


class DenoiseStep:
    """latents_i -> latents_{i+1}. With text for 2B samples and B latents the batch is
    [negative, positive] and true CFG combines the two halves; otherwise one prediction.
    `traces` counts how often the step was traced (once per input shapes)."""

    def __init__(self, transformer: HunyuanVideoTransformer):
        self.graphdef, self.state = nnx.split(transformer)
        self.traces = 0
        self._jitted = jax.jit(self._step)

    def _step(self, state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale):
        self.traces += 1
        model = nnx.merge(self.graphdef, state)
        true_cfg = text_states.shape[0] == 2 * latents.shape[0]
        x = jnp.concatenate([latents, latents]) if true_cfg else latents
        velocity = model(x, jnp.broadcast_to(t, (x.shape[0],)), text_states, text_mask, pooled, guidance)
        if true_cfg:
            velocity = combine_cfg(velocity, cfg_scale)
        return euler_step(latents, velocity, sigma, sigma_next)

    def __call__(self, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale) -> jax.Array:
        return self._jitted(self.state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale)


def denoise(step: DenoiseStep, noise: jax.Array, schedule: FlowSchedule, text: "PromptEmbeddings", guidance: np.ndarray | None,
            cfg_scale: float = 1.0, *, progress: bool = True) -> jax.Array:
    """Integrates the flow from `noise` (B, T, H, W, C) float32 at sigma 1 to latents at sigma 0.
    `text` holds B prompts, or 2B as [negative, positive] for true CFG with `cfg_scale`;
    `guidance` is the transformer's embedded-guidance input for that text batch."""
    batch = noise.shape[0]
    if text.states.shape[0] not in (batch, 2 * batch):
        raise ValueError(f"text batch {text.states.shape[0]} must be the video batch {batch}, or twice it ([negative, positive]) for CFG")
    # on device once; per step only three float32 scalars travel
    states, mask, pooled, guidance, scale = jax.device_put((text.states, text.mask, text.pooled, guidance, np.float32(cfg_scale)))
    latents = jnp.asarray(noise, jnp.float32)
    sigmas, timesteps = schedule.sigmas, schedule.timesteps
    for i in tqdm(range(schedule.steps), desc="denoising", unit="step", disable=not progress):
        # blocking each step makes the bar's rate the real compute rate (dispatch is async)
        latents = step(latents, timesteps[i], sigmas[i], sigmas[i + 1], states, mask, pooled, guidance, scale).block_until_ready()
    return latents
