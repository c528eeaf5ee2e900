"""VAE training: a few steps on a fixed batch of procedural scenes lower the reconstruction loss."""

import jax
from flax import nnx

from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.training.vae_training import VAETrainer, scene_batches

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
