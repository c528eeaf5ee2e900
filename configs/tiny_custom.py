"""A tiny HunyuanCustom with every conditioning path: the transformer at the sizes of the
official fixture `hycustom_dit_tiny` (audio MLP width 8, audio attention width 32), a Whisper
with whisper-tiny's width and depth (its states feed audio_proj) but a narrow MLP, and a tiny
CLIP tower + projector."""

from configs import hunyuan_custom, tiny


def get_config():
    config = tiny.get_config()
    config.transformer.guidance_embed = False
    config.transformer.update(hunyuan_custom.custom_fields())
    config.transformer.update(video_condition=True, audio_condition=True, audio_hidden=8, audio_attention_dim=32)
    full = hunyuan_custom.get_config()
    config.sampling.update(hunyuan_custom.custom_sampling())
    config.sampling.update(steps=10)  # tiny's
    config.editing_sampling = full.editing_sampling
    config.audio_sampling = full.audio_sampling
    config.whisper = full.whisper
    config.whisper.update(ffn_dim=64)  # width 384 and 4 layers kept: audio_proj reads 5 states of 384 channels
    config.vision = full.vision
    config.vision.update(image_size=28, patch_size=7, dim=32, heads=2, layers=3, mlp_dim=64, text_dim=32,
                         dtype="float32", param_dtype="float32")
    return config
