"""The flow-matching objective in the model's convention.

x_t = t * noise + (1 - t) * x0 with t in (0, 1) (t = 1 is pure noise); the transformer is fed
t * 1000 and predicts the velocity noise - x0. Training times come from a logit-normal
(SD3), optionally shifted towards noise the way the sampler's schedule is:
t' = shift * t / (1 + (shift - 1) * t).
"""

import jax
import jax.numpy as jnp

LOSS_WEIGHTINGS = ("none", "logit_normal", "cosmap")


def shift_time(t: jax.Array, shift: float) -> jax.Array:
    return shift * t / (1.0 + (shift - 1.0) * t)


def sample_time(rng: jax.Array, batch: int, *, mean: float = 0.0, std: float = 1.0, shift: float = 1.0) -> jax.Array:
    """(batch,) times in (0, 1): sigmoid(N(mean, std)), then shifted."""
    t = jax.nn.sigmoid(mean + std * jax.random.normal(rng, (batch,), jnp.float32))
    return shift_time(t, shift)


def noisy_latents(x0: jax.Array, noise: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x_t, velocity target) for per-example times t (B,)."""
    tb = t.reshape((-1,) + (1,) * (x0.ndim - 1))
    return tb * noise + (1.0 - tb) * x0, noise - x0


def loss_weight(t: jax.Array, weighting: str) -> jax.Array:
    """Per-example weights; "none" when t is already drawn from the wanted density."""
    if weighting == "none":
        return jnp.ones_like(t)
    if weighting == "cosmap":  # SD3's cosine-map density, as a weight on uniform-ish t
        return 2.0 / (jnp.pi * (1.0 - 2.0 * t + 2.0 * t * t))
    if weighting == "logit_normal":
        logit = jnp.log(t) - jnp.log1p(-t)
        return jnp.exp(-0.5 * logit * logit) / (jnp.sqrt(2.0 * jnp.pi) * t * (1.0 - t))
    raise ValueError(f"unknown loss weighting {weighting!r}; choose one of {LOSS_WEIGHTINGS}")


def flow_matching_loss(prediction: jax.Array, target: jax.Array, t: jax.Array, weighting: str = "none") -> jax.Array:
    """Weighted mean squared error, averaged per example then over the batch, in float32."""
    err = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
    per_example = jnp.mean(err.reshape(err.shape[0], -1), axis=1)
    return jnp.mean(loss_weight(t, weighting) * per_example)
