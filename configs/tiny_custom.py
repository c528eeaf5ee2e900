"""A tiny HunyuanCustom with every conditioning path, at the sizes of the official fixture
`hycustom_dit_tiny` (audio MLP width 8, audio attention width 32)."""

from configs import hunyuan_custom, tiny


def get_config():
    config = tiny.get_config()
    config.transformer.guidance_embed = False
    config.transformer.update(hunyuan_custom.custom_fields())
    config.transformer.update(video_condition=True, audio_condition=True, audio_hidden=8, audio_attention_dim=32)
    return config
