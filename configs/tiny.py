"""A tiny HunyuanVideo for tests and the embedded default: same structure, small widths."""

from configs import hunyuan_video_t2v


def get_config():
    config = hunyuan_video_t2v.get_config()
    config.transformer.update(
        in_channels=4,
        out_channels=4,
        hidden_size=64,
        heads=2,
        double_blocks=2,
        single_blocks=2,
        rope_axes_dims=(8, 12, 12),
        text_states_dim=32,
        text_states_dim_2=16,
        dtype="float32",
        param_dtype="float32",
    )
    # small enough for a CPU: the README's main command samples this with random weights
    config.sampling.update(height=64, width=64, frames=9, steps=10)
    config.allow_random_weights = True
    config.vae.update(
        latent_channels=4,
        block_out_channels=(8, 16, 16, 16),
        norm_groups=4,
        tile_sample_size=64,
        tile_sample_frames=16,
        dtype="float32",
        param_dtype="float32",
    )
    return config
