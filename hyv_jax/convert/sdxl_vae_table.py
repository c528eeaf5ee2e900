"""Name table of the SDXL VAE: diffusers' `AutoencoderKL` names <-> our parameters (the same
dotted paths, `weight` -> `kernel` for convs and linears)."""

from hyv_jax.convert.mapping import Rule
from hyv_jax.convert.transforms import Linear
from hyv_jax.convert.vae_table import autoencoder_rules, layer
from hyv_jax.models.hunyuan_dit.vae import SDXLVAEConfig

# torch Conv2d weight (O, I, kh, kw) <-> our kernel (kh, kw, I, O)
CONV2D = Linear(3, torch_in_order=(2, 0, 1), conv_shape=True)


def sdxl_vae_rules(config: SDXLVAEConfig) -> list[Rule]:
    n = len(config.block_out_channels)
    return autoencoder_rules(config.block_out_channels, config.layers_per_block, [i < n - 1 for i in range(n)],
                             lambda rules, name: layer(rules, name, CONV2D), CONV2D)
