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
    config.text_encoder.llm.update(
        vocab_size=512,
        hidden_size=32,  # = transformer.text_states_dim
        intermediate_size=64,
        num_layers=4,
        heads=4,
        kv_heads=2,
        head_dim=8,
        output_layer=2,
        dtype="float32",
        param_dtype="float32",
    )
    config.text_encoder.clip.update(
        vocab_size=512,
        hidden_size=16,  # = transformer.text_states_dim_2
        intermediate_size=32,
        num_layers=2,
        heads=2,
        dtype="float32",
        param_dtype="float32",
    )
    # random weights with the small tokenizers in hyv_jax/assets/tiny_text (built by its build.py)
    config.text_encoder.shipped_tokenizers = "tiny_text"
    # they know only the words of their training prompts and spell others in pieces: short
    # prompts and the default negative prompt (89 tokens here, about 30 with Llama-3's) overflow
    # where the released tokenizers would not, so their cut is not worth a warning
    config.text_encoder.on_truncation = "ignore"
    return config
