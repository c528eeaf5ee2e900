"""Hunyuan-DiT v1.0 / v1.1: the v1.2 architecture plus the image meta size and style
conditions, sampled as upstream's README says for these weights
(`--use-style-cond --size-cond 1024 1024 --beta-end 0.03`)."""

from configs import hunyuan_dit


def get_config():
    config = hunyuan_dit.get_config()
    config.transformer.size_style_cond = True
    config.sampling.update(beta_end=0.03, size_cond=(1024, 1024))
    return config
