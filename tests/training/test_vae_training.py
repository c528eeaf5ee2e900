"""VAE training: a few steps on a fixed batch of procedural scenes lower the reconstruction loss;
crops of larger scenes; the single-frame phase then clips; the measured latent scaling factor
and its check on restore."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.vae_checkpoint import MODEL_KIND, restore_vae
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig, split_moments
from hyv_jax.training.procedural_scenes import scene_items
from hyv_jax.training.vae_training import (VAELossWeights, VAETrainer, latent_scaling_factor, reconstruction_weights,
                                          scene_batches, train_vae, vae_loss)

# smaller than configs/tiny.py's VAE: one compile of the step must stay quick on CPU
CONFIG = VAEConfig(latent_channels=4, block_out_channels=(8, 8, 8, 8), norm_groups=4, tile_sample_size=64,
                   tile_sample_frames=16, dtype="float32", param_dtype="float32")


def test_steps_lower_the_loss_on_a_fixed_batch():
    trainer = VAETrainer(CausalVideoVAE(CONFIG, rngs=nnx.Rngs(0)), lr=3e-3, warmup_steps=1)
    video = next(scene_batches(2, frames=5, height=32, width=32, seed=3))
    fixed = jax.random.key(5)  # the same posterior sample before and after
    loss = jax.jit(trainer.loss)
    before = float(loss(trainer.state["params"], video, fixed)[0])
    for _ in range(8):
        parts = trainer.step(video)
    after = float(loss(trainer.state["params"], video, fixed)[0])
    print(f"VAE loss on a fixed batch: {before:.4f} -> {after:.4f} (last step: {parts})")
    assert trainer.state["step"] == 8
    assert after < 0.7 * before


def test_colour_smeared_into_the_background_weighs_like_the_object():
    video = np.full((1, 1, 4, 4, 3), -0.8, np.float32)
    video[0, 0, 1, 1] = 0.8  # the object
    recon = video.copy()
    recon[0, 0, 1, 2] = 0.0  # a halo beside it
    weights = np.asarray(reconstruction_weights(jnp.asarray(video), jnp.asarray(recon), 10.0))[0, 0, :, :, 0]
    assert weights[1, 1] == weights[1, 2] == 11.0
    assert weights.sum() == 14 * 1.0 + 2 * 11.0


def test_the_decoder_trains_on_at_least_the_posterior_noise_floor():
    model = CausalVideoVAE(CONFIG, rngs=nnx.Rngs(0))
    latent = CONFIG.latent_channels
    model.quant_conv.kernel[...] = model.quant_conv.kernel[...].at[..., latent:].set(0.0)
    model.quant_conv.bias[...] = model.quant_conv.bias[...].at[latent:].set(-30.0)  # posterior std ~3e-7
    video = jnp.asarray(next(scene_batches(1, frames=1, height=16, width=16, seed=0)))
    loss = jax.jit(lambda rng, floor: vae_loss(model, video, rng, VAELossWeights(), floor)[0], static_argnums=1)
    a, b = jax.random.key(1), jax.random.key(2)
    spread = {floor: abs(float(loss(a, floor)) - float(loss(b, floor))) for floor in (0.0, 0.5)}
    print(f"loss difference between two posterior samples: {spread}")
    assert spread[0.5] > 100 * spread[0.0]


def test_scene_batches_crop_larger_scenes():
    clips = next(scene_batches(3, frames=5, height=16, width=24, scene_size=(64, 64), seed=1))
    assert clips.shape == (3, 5, 16, 24, 3) and clips.dtype == np.float32
    assert clips.min() >= -1.0 and clips.max() <= 1.0
    full = next(scene_batches(1, frames=9, height=64, width=64, seed=1))
    assert full.shape == (1, 9, 64, 64, 3)
    # a single frame is a random frame of its scene
    images = scene_batches(1, frames=1, height=64, width=64, scene_frames=9, seed=0)
    scene = next(scene_items(1, seed=0, frames=9, height=64, width=64))[0].astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(next(images)[0, 0], scene[np.random.default_rng(1).integers(9)])
    with pytest.raises(ValueError, match="does not fit scenes"):
        next(scene_batches(1, frames=9, height=64, width=64, scene_size=(32, 32)))


def test_image_phase_then_clips_and_the_scaling_factor():
    trainer = VAETrainer(CausalVideoVAE(CONFIG, rngs=nnx.Rngs(0)), lr=3e-3, warmup_steps=1, decay_steps=5)
    clips = scene_batches(1, frames=5, height=16, width=16, scene_size=(32, 32), seed=2)
    images = scene_batches(2, frames=1, height=16, width=16, scene_size=(32, 32), seed=3)
    history = train_vae(trainer, clips, 2, images=images, image_steps=1, log_every=1, log=lambda _: None)
    assert [(h["phase"], h["step"]) for h in history] == [("images", 1), ("clips", 1), ("clips", 2)]
    assert int(trainer.state["step"]) == 5  # each clip step is followed by an image step
    with pytest.raises(ValueError, match="image_steps needs"):
        train_vae(trainer, clips, 1, image_steps=1)
    model = trainer.model()
    fresh = lambda: scene_batches(1, frames=5, height=16, width=16, scene_size=(32, 32), seed=4)  # noqa: E731
    scale = latent_scaling_factor(model, fresh(), batches=2)
    check = fresh()
    means = np.concatenate([np.asarray(split_moments(model.encode_moments(jnp.asarray(next(check))))[0]).ravel() for _ in range(2)])
    np.testing.assert_allclose(scale * means.std(), 1.0, rtol=1e-5)


def test_restore_refuses_a_config_with_another_scaling_factor(tmp_path):
    config = dataclasses.replace(CONFIG, scaling_factor=0.8)
    save_converted(tmp_path, params_to_numpy(CausalVideoVAE(config, rngs=nnx.Rngs(0))), MODEL_KIND, config, "test", "float32")
    assert restore_vae(tmp_path).config.scaling_factor == 0.8
    assert restore_vae(tmp_path, config).config.scaling_factor == 0.8
    with pytest.raises(ValueError, match=r"trained with latent scaling factor 0.8, the config says 0.476986: set vae.scaling_factor=0.8"):
        restore_vae(tmp_path, CONFIG)
