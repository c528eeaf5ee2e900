"""HunyuanCustom's step cache (upstream `use_deepcache`, only at 30 steps): on steps
11, 12, 14, 15, 17, 18, 20, 21 the joint tokens entering the last single block are not
recomputed but taken from the latest full step; only the conditioning vector (the timestep
changes), that block and the final layer run. hymm_sp/sample_inference.py decides the steps;
hymm_sp/modules/models.py (`is_cache`) keeps the tokens.

Which steps reuse is a boolean per step in the carry, read with a step counter, so one
compiled step (a `lax.cond`) serves cached and full steps alike.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.parallel.plan import to_host

STEP_CACHE_STEPS = 30
CACHED_STEPS = frozenset({11, 12, 14, 15, 17, 18, 20, 21})


def cached_steps(steps: int, enabled: bool = True) -> frozenset[int]:
    """The steps that reuse the cache: upstream's at 30 steps, none otherwise or when disabled."""
    return CACHED_STEPS if enabled and steps == STEP_CACHE_STEPS else frozenset()


class StepCacheCarry(NamedTuple):
    joint: jax.Array  # (b, N + L, D) tokens entering the last single block, from the latest full step
    step: jax.Array  # int32: the index of the next step
    reuse: jax.Array  # (steps,) bool: which steps run from `joint`
    cached_calls: jax.Array  # int32: steps so far that reused it


@dataclasses.dataclass(frozen=True)
class StepCache:
    @staticmethod
    def init_carry(model, x_shape, conditions, steps: int, reuse: frozenset[int]) -> StepCacheCarry:
        """The carry before the first step (host arrays), for a model batch of latents `x_shape`."""
        img = conditions.image_tokens_shape(model, x_shape)
        joint = np.zeros((x_shape[0], img.shape[1] + conditions.text_states.shape[1], img.shape[2]), img.dtype)
        flags = np.zeros(steps, bool)
        flags[sorted(i for i in reuse if i < steps)] = True
        return StepCacheCarry(joint, np.int32(0), flags, np.int32(0))

    @staticmethod
    def full_steps(carry: StepCacheCarry, steps: int) -> int:
        return steps - int(to_host(carry.cached_calls))

    def velocity(self, model, x, t, conditions, parallel, carry: StepCacheCarry):
        s = conditions.prepare(model, x, t, parallel)
        last = model.config.single_blocks - 1
        use = carry.reuse[carry.step]

        def full(_):
            img, txt = model.double_stream(s, s.img, s.txt)
            return model.single_stream(s, jnp.concatenate([img, txt], axis=1), stop=last)

        joint = jax.lax.cond(use, lambda _: carry.joint, full, None)
        out = model.single_stream(s, joint, start=last)
        return model.velocity(s, out), StepCacheCarry(joint, carry.step + 1, carry.reuse,
                                                      carry.cached_calls + use.astype(jnp.int32))
