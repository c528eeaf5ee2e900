"""Training the causal VAE from scratch: reconstruction (L1 + MSE) plus a small KL term on the
posterior, AdamW, one jitted step over the split (graphdef, state) with the state donated.

Used for the embedded tiny default, whose VAE learns the procedural scenes
(procedural_scenes.py); videos are float32 in [-1, 1], channels-last, untiled.
"""

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from hyv_jax.models.vae import CausalVideoVAE, sample_posterior, split_moments
from hyv_jax.training.procedural_scenes import scene_items


@dataclasses.dataclass(frozen=True)
class VAELossWeights:
    l1: float = 1.0
    mse: float = 1.0
    kl: float = 1e-4  # small: the latent must stay informative, only its scale is kept in check
    # extra weight on pixels unlike the clip's median colour: small objects on a flat background
    # are otherwise the last thing learned (an early VAE reconstructs the background alone)
    foreground: float = 10.0


def vae_loss(model: CausalVideoVAE, video: jax.Array, rng: jax.Array, weights: VAELossWeights) -> tuple[jax.Array, dict]:
    """Loss of reconstructing `video` through a posterior sample; returns (loss, parts) (l1 and
    mse foreground-weighted)."""
    mean, logvar = split_moments(model.encode_moments(video))
    recon = model.decode_frames(sample_posterior(mean, logvar, rng)).astype(jnp.float32)
    video = video.astype(jnp.float32)
    err = recon - video
    median = jnp.median(video, axis=(1, 2, 3), keepdims=True)
    weight = 1.0 + weights.foreground * (jnp.max(jnp.abs(video - median), axis=-1, keepdims=True) > 0.1)
    l1, mse = jnp.mean(weight * jnp.abs(err)), jnp.mean(weight * jnp.square(err))
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    loss = weights.l1 * l1 + weights.mse * mse + weights.kl * kl
    return loss, {"loss": loss, "l1": l1, "mse": mse, "kl": kl}


class VAETrainer:
    """Owns (params, opt_state, step); `step(video)` runs one optimisation step."""

    def __init__(self, model: CausalVideoVAE, *, lr: float = 1e-3, warmup_steps: int = 50, grad_clip: float = 1.0,
                 weights: VAELossWeights = VAELossWeights(), seed: int = 0):
        self.graphdef, params = nnx.split(model)
        self.weights = weights
        self.optimizer = optax.chain(optax.clip_by_global_norm(grad_clip),
                                     optax.adamw(optax.linear_schedule(0.0, lr, max(warmup_steps, 1)), weight_decay=0.0))
        self.state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(jax.random.key(seed)),
                      "params": params, "opt_state": self.optimizer.init(params)}
        self._step = jax.jit(self._train_step, donate_argnums=(0,))

    def loss(self, params: nnx.State, video: jax.Array, rng: jax.Array) -> tuple[jax.Array, dict]:
        return vae_loss(nnx.merge(self.graphdef, params), video, rng, self.weights)

    def _train_step(self, state: dict, video: jax.Array):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        (_, parts), grads = jax.value_and_grad(self.loss, has_aux=True)(state["params"], video, rng)
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return dict(state, step=state["step"] + 1, params=params, opt_state=opt_state), parts

    def step(self, video: np.ndarray | jax.Array) -> dict[str, float]:
        self.state, parts = self._step(self.state, jnp.asarray(video, jnp.float32))
        return {k: float(v) for k, v in jax.device_get(parts).items()}

    def model(self) -> CausalVideoVAE:
        return nnx.merge(self.graphdef, self.state["params"])


def scene_batches(batch_size: int, *, frames: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless (B, T, H, W, 3) float32 batches in [-1, 1] of procedural training scenes,
    rendered on the fly (held-out prompts excluded)."""
    items = scene_items(1 << 62, seed=seed, frames=frames, height=height, width=width)
    while True:
        clips = [next(items)[0] for _ in range(batch_size)]
        yield np.stack(clips).astype(np.float32) / 127.5 - 1.0


def train_vae(trainer: VAETrainer, batches: Iterator[np.ndarray], steps: int, *, log_every: int = 50, log=print) -> list[dict]:
    """Runs `steps` steps; returns the logged {step, loss, l1, mse, kl} records."""
    history = []
    for i in range(1, steps + 1):
        parts = trainer.step(next(batches))
        if i % log_every == 0 or i == steps:
            history.append(dict(step=i, **parts))
            log(f"vae step {i}: loss {parts['loss']:.4f} (l1 {parts['l1']:.4f}, mse {parts['mse']:.4f}, kl {parts['kl']:.3f})")
    return history
