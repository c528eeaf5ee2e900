"""Model definitions: the MMDiT, the causal 3D VAE, text encoders, HunyuanCustom."""
