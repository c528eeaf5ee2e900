"""First Block Cache (ParaAttention's dynamic step caching; diffusers' FirstBlockCacheConfig):
a denoising step runs the first double block, and when that block's image residual changed
little since the last full step (mean |r - r_prev| / mean |r_prev| <= threshold) it skips every
later block, adding the image residual those blocks produced at the last full step instead.
Higher thresholds skip more steps (faster, less faithful); 0 never skips.

The decision is a `lax.cond` inside the compiled step, so skipped blocks cost nothing on the
device and one compiled step serves every threshold (it is an input) and every step.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.nn.patch import patch_grid
from hyv_jax.sampling.denoise import DenoiseStep


class BlockCache(NamedTuple):
    head: jax.Array  # (B, N, D) the first double block's image residual at the last full step
    tail: jax.Array  # (B, N, D) image tokens after every block minus after the first, same step
    filled: jax.Array  # bool: a full step has run


def empty_cache(c: TransformerConfig, latents_shape: tuple[int, ...]) -> BlockCache:
    """The cache before the first step, for the model batch of `latents_shape`."""
    shape = (latents_shape[0], int(np.prod(patch_grid(latents_shape, c.patch_size))), c.hidden_size)
    zeros = jnp.zeros(shape, jnp.dtype(c.dtype))
    return BlockCache(zeros, zeros, jnp.array(False))


def relative_change(residual: jax.Array, previous: jax.Array) -> jax.Array:
    """mean |residual - previous| / mean |previous|, in float32."""
    residual, previous = residual.astype(jnp.float32), previous.astype(jnp.float32)
    return jnp.mean(jnp.abs(residual - previous)) / jnp.mean(jnp.abs(previous))


def cached_velocity(model: HunyuanVideoTransformer, cache: BlockCache, threshold: jax.Array, x, t, text_states, text_mask,
                    text_states_2, guidance=None) -> tuple[jax.Array, BlockCache, jax.Array, jax.Array]:
    """The model's velocity with the First Block Cache -> (velocity, next cache, whether the
    later blocks ran, the relative change the decision read). The whole batch decides together
    (as diffusers does per call)."""
    s = model.prepare(x, t, text_states, text_mask, text_states_2, guidance)
    img, txt = model.double_block(s, s.img, s.txt, 0)
    residual = img - s.img
    change = relative_change(residual, cache.head)
    compute = jnp.logical_not(cache.filled) | (change > threshold)

    def full(_):
        out = model.single_stream_image(s, *model.double_stream(s, img, txt, start=1))
        return out, BlockCache(residual, out - img, jnp.array(True))

    def reuse(_):
        return img + cache.tail, cache

    out, cache = jax.lax.cond(compute, full, reuse, None)
    return model.velocity(s, out), cache, compute, change


class FirstBlockCacheStep(DenoiseStep):
    """The denoising step with the First Block Cache. `begin(threshold)` starts a sampling run;
    `computed` and `changes` then list, per step so far, whether the later blocks ran and the
    relative change that decided it (device scalars: reading them waits for the step)."""

    def __init__(self, transformer: HunyuanVideoTransformer):
        super().__init__(transformer)
        self.config = transformer.config
        self.begin(0.0)

    def begin(self, threshold: float) -> None:
        self.threshold = np.float32(threshold)
        self.cache = None
        self.computed: list = []  # per step: did the later blocks run
        self.changes: list = []  # per step: the first block's relative change (inf-like before the first full step)

    def predict(self, model, x, t, text_states, text_mask, pooled, guidance, conditions, true_cfg: bool, *, cache, threshold):
        velocity, cache, computed, change = cached_velocity(model, cache, threshold, x, t, text_states, text_mask, pooled,
                                                            guidance)
        return velocity, (cache, computed, change)

    def __call__(self, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale) -> jax.Array:
        if self.cache is None:
            model_batch = text_states.shape[0]  # doubled for true CFG
            self.cache = empty_cache(self.config, (model_batch, *latents.shape[1:]))
        latents, (self.cache, computed, change) = self._jitted(
            self.state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale, self.conditions,
            cache=self.cache, threshold=self.threshold)
        self.computed.append(computed)
        self.changes.append(change)
        return latents

    def computed_steps(self) -> int:
        """How many steps of the run so far ran every block."""
        return int(sum(bool(c) for c in self.computed))
