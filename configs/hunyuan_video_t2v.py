"""The released HunyuanVideo 13B text-to-video model (720p / 540p, 129 frames)."""

import ml_collections

from configs import training_defaults


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
            # xla | cudnn | pallas | splash | auto (cudnn on GPU, splash on TPU, xla on CPU)
            attention_impl="auto",
            remat="none",  # none | full | dots | dots_no_batch (nn/remat.py)
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
            dtype="float16",  # upstream's --vae-precision default (hyvideo/config.py:70)
            param_dtype="float16",
        )
    )
    # LLM: llava-llama-3-8b-v1_1's language model, hidden state after decoder layer 30 of 32
    # (hidden_states[-3], no final norm); CLIP: openai/clip-vit-large-patch14's text model
    config.text_encoder = ml_collections.ConfigDict(
        dict(
            llm=dict(
                vocab_size=128320,
                hidden_size=4096,
                intermediate_size=14336,
                num_layers=32,
                heads=32,
                kv_heads=8,
                head_dim=128,
                rope_theta=500000.0,
                rope_scaling=None,
                rms_norm_eps=1e-5,
                output_layer=30,
                dtype="float16",  # upstream's --text-encoder-precision default (hyvideo/config.py:91)
                param_dtype="float16",
            ),
            clip=dict(
                vocab_size=49408,
                hidden_size=768,
                intermediate_size=3072,
                num_layers=12,
                heads=12,
                max_positions=77,
                layer_norm_eps=1e-5,
                hidden_act="quick_gelu",
                eos_token_id=2,
                dtype="float16",  # --text-encoder-precision-2 (hyvideo/config.py:148)
                param_dtype="float16",
            ),
            llm_max_length=351,  # 256 prompt tokens + the video template's 95
            clip_max_length=77,
            on_truncation="warn",  # or "error", "ignore"
            shipped_tokenizers=None,  # weights and tokenizers come from converted folders
        )
    )
    # Mesh axes (-1 = the remaining devices) and the sequence parallelism of the joint attention:
    # "none" | "ulysses" (heads must divide) | "ring" | "usp" (ulysses_degree x ring over context).
    config.parallel = ml_collections.ConfigDict(
        dict(
            mesh=dict(data=1, fsdp=-1, context=1, tensor=1),
            context_strategy="none",
            ulysses_degree=1,
            # multi-host (parallel/mesh.py initialize_distributed): None joins when the environment
            # names a multi-process job (SLURM, GKE TPU, Open MPI, $JAX_COORDINATOR_ADDRESS) or the
            # fields below are set; True always (Cloud TPU VM slices); False never. Empty fields:
            # JAX detects them.
            distributed=ml_collections.config_dict.placeholder(bool),
            coordinator_address="",
            coordinator_bind_address="",  # default: $JAX_COORDINATOR_BIND_ADDRESS, else all interfaces
            num_processes=-1,
            process_id=-1,
            initialization_timeout_s=300,  # for every process to join
            heartbeat_timeout_s=100,  # a process silent this long fails the job
            shutdown_timeout_s=300,  # for every process to finish at exit
        )
    )
    config.training = training_defaults.get_training_config()
    return config
