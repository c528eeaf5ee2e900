"""The released HunyuanCustom 720p DiT: HunyuanVideo's 13B without embedded guidance.

One config for the three checkpoints; pick the layout with overrides:
  hunyuancustom_720P          (identity + text)   the defaults
  hunyuancustom_audio_720P    --config.transformer.audio_condition=True
  hunyuancustom_editing_720P  --config.transformer.video_condition=True
"""

import ml_collections

from configs import hunyuan_video_t2v


def custom_fields() -> dict:
    """The HunyuanCustom-only transformer fields at the released sizes."""
    return dict(
        video_condition=False,
        audio_condition=False,
        audio_insert_after=(1, 3, 5, 7, 9, 11),
        audio_window=10,
        audio_states=5,
        audio_channels=384,
        audio_hidden=1024,
        audio_tokens=4,
        audio_attention_dim=1024,
        experimental_multi_reference=False,
    )


NEGATIVE_PROMPT = (
    "Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, bad eyes, "
    "bad limbs, distortion, blurring, text, subtitles, static, picture, black border."
)

# the audio scripts' negative prompt (scripts/run_sample_batch_audio_sp.sh and
# assets/meta_files/man_01_audio.json; scripts/run_single_audio.sh repeats "aerial view" once more)
AUDIO_NEGATIVE_PROMPT = (
    "Two people, two persons, aerial view, overexposed, low quality, deformation, a poor composition, bad hands, bad teeth, "
    "bad eyes, bad limbs, distortion, blurring, text, subtitles, static, picture, black border."
)


def custom_sampling() -> dict:
    """The official scripts' defaults (identity and audio checkpoints; the identity and editing
    scripts' negative prompt: upstream's --neg-prompt default '' is what no shipped script uses)."""
    return dict(steps=30, flow_shift=13.0, cfg_scale=7.5, seed=1024, negative_prompt=NEGATIVE_PROMPT)


def get_config() -> ml_collections.ConfigDict:
    config = hunyuan_video_t2v.get_config()
    config.transformer.guidance_embed = False
    config.transformer.update(custom_fields())
    config.sampling.update(custom_sampling())
    # the editing checkpoint's schedule (applied by sample.py with --input-video)
    config.editing_sampling = ml_collections.ConfigDict(dict(steps=50, flow_shift=5.0))
    # the audio checkpoint's (applied by sample.py with --input-audio)
    config.audio_sampling = ml_collections.ConfigDict(dict(negative_prompt=AUDIO_NEGATIVE_PROMPT))
    # whisper-tiny, run in fp32 as upstream (audio checkpoint only)
    config.whisper = ml_collections.ConfigDict(
        dict(mel_bins=80, dim=384, heads=6, layers=4, ffn_dim=1536, positions=1500, dtype="float32", param_dtype="float32")
    )
    # LLaVA's CLIP ViT-L/14-336 (hidden state -2) and projector to Llama-3-8B's width
    config.vision = ml_collections.ConfigDict(
        dict(image_size=336, patch_size=14, dim=1024, heads=16, layers=24, mlp_dim=4096, act="quick_gelu", layer_norm_eps=1e-5,
             feature_layer=-2, text_dim=4096, projector_act="gelu", dtype="float16", param_dtype="float16")
    )
    return config
