"""The embedded default sample.py uses without checkpoints: configs/tiny.py's model trained on
the procedural scenes (bench/train_tiny_default.py), shipped in hyv_jax/assets/tiny_default.

Differences from tiny.py, each for the training budget of a 2-core CPU: 8 latent channels (4
cannot hold a coloured shape and its motion over four frames at 8x8), 32 prompt tokens (the
captions have under ten; the official 256 made text the bulk of every attention), and the
latent scaling factor that `train.py train-vae` measured on the scenes.
"""

from configs import tiny
from hyv_jax.loading.shipped import shipped_scaling_factor

PROMPT_TOKENS = 32
VIDEO_TEMPLATE_TOKENS = 95  # the official video template's crop, as hunyuan_video_t2v.py
# small frames need little shift towards noise; training draws its times with the same shift
FLOW_SHIFT = 3.0
SAMPLING_STEPS = 20


def get_config():
    config = tiny.get_config()
    config.transformer.update(in_channels=8, out_channels=8)
    # measured by train-vae and stored with the shipped VAE (restore_vae refuses another)
    config.vae.update(latent_channels=8, scaling_factor=shipped_scaling_factor() or config.vae.scaling_factor)
    config.text_encoder.llm_max_length = VIDEO_TEMPLATE_TOKENS + PROMPT_TOKENS
    config.sampling.update(height=64, width=64, frames=9, steps=SAMPLING_STEPS, flow_shift=FLOW_SHIFT, seed=0)
    config.default_prompt = "a red circle moving left"  # sample.py's prompt: the model knows only the scenes' words
    return config
