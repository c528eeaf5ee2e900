"""First Block Cache (ParaAttention's dynamic step caching; diffusers' FirstBlockCacheConfig):
a denoising step runs the first double block, and when that block's image residual changed
little since the last full step (mean |r - r_prev| / mean |r_prev| <= threshold) it skips every
later block, adding the image residual those blocks produced at the last full step instead.
Higher thresholds skip more steps (faster, less faithful); 0 never skips.

The decision is a `lax.cond` inside the compiled step, so skipped blocks cost nothing on the
device and one compiled step serves every threshold (it is an input) and every step.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.parallel.plan import to_host


class BlockCache(NamedTuple):
    """The policy's carry."""

    head: jax.Array  # (b, N, D) the first double block's image residual at the last full step
    tail: jax.Array  # (b, N, D) image tokens after every block minus after the first, same step
    filled: jax.Array  # bool: a full step has run
    threshold: jax.Array  # float32: the run's threshold
    full_steps: jax.Array  # int32: steps so far that ran every block


def relative_change(residual: jax.Array, previous: jax.Array) -> jax.Array:
    """mean |residual - previous| / mean |previous|, in float32."""
    residual, previous = residual.astype(jnp.float32), previous.astype(jnp.float32)
    return jnp.mean(jnp.abs(residual - previous)) / jnp.mean(jnp.abs(previous))


@dataclasses.dataclass(frozen=True)
class FirstBlockCache:
    """The velocity with the First Block Cache. The whole model batch decides together (as
    diffusers does per call)."""

    @staticmethod
    def init_carry(model, x_shape, conditions, threshold: float) -> BlockCache:
        """The cache before the first step (host arrays), for a model batch of latents `x_shape`."""
        img = conditions.image_tokens_shape(model, x_shape)
        zeros = np.zeros(img.shape, img.dtype)
        return BlockCache(zeros, zeros, np.array(False), np.float32(threshold), np.int32(0))

    @staticmethod
    def full_steps(carry: BlockCache, steps: int) -> int:
        return int(to_host(carry.full_steps))

    def velocity(self, model, x, t, conditions, parallel, cache: BlockCache):
        s = conditions.prepare(model, x, t, parallel)
        img, txt = model.double_block(s, s.img, s.txt, 0)
        residual = img - s.img
        compute = jnp.logical_not(cache.filled) | (relative_change(residual, cache.head) > cache.threshold)

        def full(_):
            img_out, txt_out = model.double_stream(s, img, txt, start=1)
            out = model.single_stream(s, jnp.concatenate([img_out, txt_out], axis=1))[:, :s.n_img]
            return out, cache._replace(head=residual, tail=out - img, filled=jnp.array(True))

        def reuse(_):
            return img + cache.tail, cache

        out, cache = jax.lax.cond(compute, full, reuse, None)
        return model.velocity(s, out), cache._replace(full_steps=cache.full_steps + compute.astype(jnp.int32))

