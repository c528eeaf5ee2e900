"""The released Hunyuan-DiT v1.2 text-to-image model (DiT-g/2, 1.5B) with its bilingual CLIP
(BERT) and mT5 text encoders and the sdxl-vae-fp16-fix VAE; sampling as the official
sample_t2i.py (hydit/config.py, hydit/constants.py): DDPM, 100 steps, CFG 6, 1024x1024.
configs/hunyuan_dit_v1_1.py has the v1.0/v1.1 differences."""

import ml_collections

from configs import hunyuan_video_t2v
from hyv_jax.sampling.hunyuan_dit_options import NEGATIVE_PROMPT


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.pipeline = "hunyuan_dit"  # text-to-image: sample.py routes to the Hunyuan-DiT pipeline
    config.default_prompt = "一只小猫"  # upstream's --prompt default
    config.transformer = ml_collections.ConfigDict(
        dict(
            in_channels=4,
            patch_size=2,
            hidden_size=1408,
            heads=16,
            depth=40,
            mlp_ratio=4.3637,
            learn_sigma=True,
            text_states_dim=1024,
            text_len=77,
            text_states_dim_t5=2048,
            text_len_t5=256,
            pooler_heads=8,
            pooler_out_dim=1024,
            size_style_cond=False,
            rope_base_grid=32,
            dtype="bfloat16",
            param_dtype="bfloat16",
            # xla | cudnn | pallas | splash | auto (cudnn on GPU, splash on TPU, xla on CPU)
            attention_impl="auto",
            remat="none",
        )
    )
    # t2i/clip_text_encoder (BERT, read without its pooler) and t2i/mt5 (mT5-XL's encoder)
    config.text_encoder = ml_collections.ConfigDict(
        dict(
            bert=dict(
                vocab_size=47020,
                hidden_size=1024,
                intermediate_size=4096,
                num_layers=24,
                heads=16,
                max_positions=512,
                type_vocab_size=2,
                layer_norm_eps=1e-12,
                hidden_act="gelu",
                dtype="bfloat16",
                param_dtype="bfloat16",
                attention_impl="xla",
            ),
            mt5=dict(
                vocab_size=250112,
                d_model=2048,
                d_kv=64,
                heads=32,
                d_ff=5120,
                num_layers=24,
                relative_attention_num_buckets=32,
                relative_attention_max_distance=128,
                layer_norm_eps=1e-6,
                dense_act="gelu_tanh",
                dtype="bfloat16",
                param_dtype="bfloat16",
            ),
            bert_max_length=77,  # the tokenizer's model_max_length (hydit/diffusion/pipeline.py:314)
            mt5_max_length=256,  # MT5Embedder(max_length=256) (hydit/inference.py)
            on_truncation="warn",  # or "error"
            shipped_tokenizers=None,  # tokenizers come with the converted folders
        )
    )
    config.vae = ml_collections.ConfigDict(
        dict(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            norm_groups=32,
            norm_eps=1e-6,
            scaling_factor=0.13025,
            dtype="float32",
            param_dtype="float32",
            attention_impl="xla",
        )
    )
    # hydit/config.py inference defaults and hydit/constants.py SAMPLER_FACTORY
    # (hyv_jax.sampling.hunyuan_dit_options.ImageSamplingOptions)
    config.sampling = ml_collections.ConfigDict(
        dict(
            height=1024,
            width=1024,
            steps=100,
            solver="ddpm",  # ddpm | ddim | dpmms (upstream --sampler)
            cfg_scale=6.0,
            guidance_rescale=0.0,  # upstream never sets it; diffusers' rescale_noise_cfg when > 0
            negative_prompt=NEGATIVE_PROMPT,
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.02,
            prediction_type="v_prediction",
            size_cond=(),  # (w, h) of upstream --size-cond: v1.0/v1.1 only
            resolution_binning=False,  # snap to the released resolutions (diffusers' default; upstream aligns to 16)
            seed=42,
            num_images=1,
        )
    )
    config.allow_random_weights = False
    config.parallel = hunyuan_video_t2v.get_config().parallel  # the same mesh and context options
    return config
