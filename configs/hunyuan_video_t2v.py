"""The released HunyuanVideo 13B text-to-video model (720p / 540p, 129 frames)."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.transformer = ml_collections.ConfigDict(
        dict(
            in_channels=16,
            out_channels=16,
            patch_size=(1, 2, 2),
            hidden_size=3072,
            heads=24,
            mlp_ratio=4.0,
            mlp_act="gelu_tanh",
            double_blocks=20,
            single_blocks=40,
            refiner_blocks=2,
            rope_axes_dims=(16, 56, 56),
            rope_theta=256.0,
            text_states_dim=4096,
            text_states_dim_2=768,
            guidance_embed=True,
            dtype="bfloat16",
            param_dtype="bfloat16",
            attention_impl="xla",
        )
    )
    # upstream sample_video.py's defaults (hyv_jax.sampling.options.SamplingOptions)
    config.sampling = ml_collections.ConfigDict(
        dict(
            height=720,
            width=1280,
            frames=129,
            steps=50,
            flow_shift=7.0,
            embedded_guidance=6.0,
            cfg_scale=1.0,
            noise_dtype="float16",
            sigma_spacing="official",
            vae_tiling=True,
        )
    )
    config.allow_random_weights = False  # sampling needs converted checkpoints
    config.vae = ml_collections.ConfigDict(
        dict(
            in_channels=3,
            out_channels=3,
            latent_channels=16,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            norm_groups=32,
            norm_eps=1e-6,
            scaling_factor=0.476986,
            spatial_ratio=8,
            temporal_ratio=4,
            spatial_tiling=True,
            temporal_tiling=True,
            tile_sample_size=256,
            tile_sample_frames=64,
            tile_overlap=0.25,
            dtype="bfloat16",
            param_dtype="bfloat16",
        )
    )
    return config
