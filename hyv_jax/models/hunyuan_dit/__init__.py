"""Hunyuan-DiT (Tencent's bilingual text-to-image diffusion transformer, v1.0-v1.2): the DiT,
its text encoders (bilingual CLIP = BERT, mT5 encoder) and the SDXL 2D VAE."""
