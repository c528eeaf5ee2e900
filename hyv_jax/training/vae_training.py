"""Training the causal VAE from scratch: reconstruction (L1 + MSE) plus a small KL term on the
posterior, AdamW, one jitted step over the split (graphdef, state) with the state donated.

Used for the embedded tiny default, whose VAE learns the procedural scenes
(procedural_scenes.py); videos are float32 in [-1, 1], channels-last, untiled. Single frames
come first (cheap: the spatial layers learn colours and shapes), then clips interleaved with
frames (the temporal layers learn motion without the spatial ones forgetting).
"""

import dataclasses
import math
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
    # extra weight on pixels unlike the clip's median colour, in the clip or in its reconstruction:
    # small objects on a flat background are otherwise the last thing learned (an early VAE
    # reconstructs the background alone), and weighting only the clip's object pixels lets the
    # decoder smear colour into the background around them (a halo that turned white purple)
    foreground: float = 10.0


def reconstruction_weights(video: jax.Array, recon: jax.Array, foreground: float) -> jax.Array:
    """(B, T, H, W, 1) loss weights: 1, plus `foreground` where the clip or its reconstruction
    is further than 0.1 from the clip's median colour in some channel."""
    median = jnp.median(video, axis=(1, 2, 3), keepdims=True)
    unlike = lambda x: jnp.max(jnp.abs(x - median), axis=-1, keepdims=True) > 0.1  # noqa: E731
    return 1.0 + foreground * (unlike(video) | unlike(jax.lax.stop_gradient(recon)))


def vae_loss(model: CausalVideoVAE, video: jax.Array, rng: jax.Array, weights: VAELossWeights,
             min_posterior_std: float = 0.0) -> tuple[jax.Array, dict]:
    """Loss of reconstructing `video` through a posterior sample whose noise has at least
    `min_posterior_std` (unscaled latent units); returns (loss, parts) (l1 and mse
    foreground-weighted).

    The floor keeps the latent space evenly scaled: with the small KL weight alone the posterior
    noise can shrink to ~0.004, and the encoder then codes some content (green objects, in the
    first tiny default) in deviations of ~0.01 that a diffusion model's latent-space loss hardly
    sees and whose small errors the decoder blows up."""
    mean, logvar = split_moments(model.encode_moments(video))
    if min_posterior_std > 0:
        logvar = jnp.maximum(logvar, 2.0 * math.log(min_posterior_std))
    recon = model.decode_frames(sample_posterior(mean, logvar, rng)).astype(jnp.float32)
    video = video.astype(jnp.float32)
    err = recon - video
    weight = reconstruction_weights(video, recon, weights.foreground)
    l1, mse = jnp.mean(weight * jnp.abs(err)), jnp.mean(weight * jnp.square(err))
    mean, logvar = mean.astype(jnp.float32), logvar.astype(jnp.float32)
    kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    loss = weights.l1 * l1 + weights.mse * mse + weights.kl * kl
    return loss, {"loss": loss, "l1": l1, "mse": mse, "kl": kl}


class VAETrainer:
    """Owns (params, opt_state, step); `step(video)` runs one optimisation step."""

    def __init__(self, model: CausalVideoVAE, *, lr: float = 1e-3, warmup_steps: int = 50, decay_steps: int | None = None,
                 grad_clip: float = 1.0, weights: VAELossWeights = VAELossWeights(), min_posterior_std: float = 0.0,
                 seed: int = 0):
        """decay_steps: cosine decay to 5% of lr over this many optimizer steps (None: constant);
        min_posterior_std: see vae_loss."""
        self.graphdef, params = nnx.split(model)
        self.weights = weights
        self.min_posterior_std = min_posterior_std
        warmup = max(warmup_steps, 1)
        schedule = (optax.linear_schedule(0.0, lr, warmup) if decay_steps is None else
                    optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(decay_steps, warmup + 1), 0.05 * lr))
        self.optimizer = optax.chain(optax.clip_by_global_norm(grad_clip), optax.adamw(schedule, weight_decay=0.0))
        self.state = {"step": jnp.zeros((), jnp.int32), "rng": jax.random.key_data(jax.random.key(seed)),
                      "params": params, "opt_state": self.optimizer.init(params)}
        self._step = jax.jit(self._train_step, donate_argnums=(0,))

    def loss(self, params: nnx.State, video: jax.Array, rng: jax.Array) -> tuple[jax.Array, dict]:
        return vae_loss(nnx.merge(self.graphdef, params), video, rng, self.weights, self.min_posterior_std)

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


def scene_batches(batch_size: int, *, frames: int, height: int, width: int, scene_size: tuple[int, int] | None = None,
                  scene_frames: int | None = None, seed: int = 0) -> Iterator[np.ndarray]:
    """Endless (B, frames, height, width, 3) float32 batches in [-1, 1] of procedural training
    scenes (held-out prompts excluded), rendered on the fly at `scene_size` (default: the crop
    size) and `scene_frames` (default: max(frames, 9)), then cropped at random: a crop of a larger scene keeps the pixel
    size of objects at the sampling resolution while the step stays cheap. frames=1 takes one
    random frame of each scene."""
    scene_h, scene_w = scene_size or (height, width)
    scene_frames = scene_frames or max(frames, 9)
    if scene_h < height or scene_w < width or scene_frames < frames:
        raise ValueError(f"crop {frames}x{height}x{width} does not fit scenes of {scene_frames}x{scene_h}x{scene_w}")
    items = scene_items(1 << 62, seed=seed, frames=scene_frames, height=scene_h, width=scene_w)
    rng = np.random.default_rng(seed + 1)
    while True:
        clips = []
        for _ in range(batch_size):
            video = next(items)[0]
            t = rng.integers(scene_frames - frames + 1) if frames == 1 else 0  # clips keep frame 0: it is coded alone
            y, x = rng.integers(scene_h - height + 1), rng.integers(scene_w - width + 1)
            clips.append(video[t:t + frames, y:y + height, x:x + width])
        yield np.stack(clips).astype(np.float32) / 127.5 - 1.0


def train_vae(trainer: VAETrainer, clips: Iterator[np.ndarray], steps: int, *, images: Iterator[np.ndarray] | None = None,
              image_steps: int = 0, log_every: int = 50, log=print) -> list[dict]:
    """`image_steps` steps on batches from `images`, then `steps` steps on `clips`, each followed
    by a step on `images` when given; returns the logged {phase, step, loss, l1, mse, kl} records."""
    if image_steps and images is None:
        raise ValueError("image_steps needs an `images` batch iterator")
    history = []
    for phase, n in (("images", image_steps), ("clips", steps)):
        for i in range(1, n + 1):
            parts = trainer.step(next(images if phase == "images" else clips))
            if phase == "clips" and images is not None:
                trainer.step(next(images))
            if i % log_every == 0 or i == n:
                history.append(dict(phase=phase, step=i, **parts))
                log(f"vae {phase} step {i}/{n}: loss {parts['loss']:.4f} (l1 {parts['l1']:.4f}, mse {parts['mse']:.4f}, kl {parts['kl']:.3f})")
    return history


def latent_scaling_factor(model: CausalVideoVAE, clips: Iterator[np.ndarray], batches: int = 4) -> float:
    """1 / standard deviation of the posterior means over `batches` batches: the factor that
    gives the transformer unit-variance latents (the role of HunyuanVideo's 0.476986)."""
    encode = jax.jit(lambda video: split_moments(model.encode_moments(video))[0])
    means = np.concatenate([np.asarray(encode(jnp.asarray(next(clips)))).ravel() for _ in range(batches)])
    return float(1.0 / means.std())
