"""The SDXL 2D VAE against diffusers' AutoencoderKL (float32, random non-zero weights through
our converter, a small config with every block kind): encode's posterior and decode."""

import jax
import numpy as np
from helpers import report, torch_random_init
from hunyuan_dit_helpers import model_with

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.sdxl_vae_checkpoint import (
    export_torch_sdxl_vae,
    read_torch_sdxl_vae,
)
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE, SDXLVAEConfig

CONFIG = SDXLVAEConfig(block_out_channels=(8, 16, 16), layers_per_block=1, norm_groups=4)


def test_sdxl_vae_matches_diffusers():
    import torch
    from diffusers import AutoencoderKL
    from flax import nnx

    ref = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=CONFIG.block_out_channels,
                        layers_per_block=CONFIG.layers_per_block, latent_channels=4, norm_num_groups=CONFIG.norm_groups).eval()
    torch_random_init(ref, 0)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    flat = read_torch_sdxl_vae(from_arrays(state, "diffusers"), CONFIG)
    model = model_with(lambda: SDXLVAE(CONFIG, rngs=nnx.Rngs(0)), flat)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 3, 16, 24)).astype(np.float32)  # non-square, batch 2
    with torch.no_grad():
        posterior = ref.encode(torch.from_numpy(images)).latent_dist
        decoded = ref.decode(posterior.mean).sample.numpy()
    # one compiled program (op-by-op dispatch would compile every primitive on its own)
    (mean, logvar), ours_decoded = jax.jit(lambda m, x, z: (m.encode(x), m.decode(z)))(
        model, np.moveaxis(images, 1, -1), np.moveaxis(posterior.mean.numpy(), 1, -1))
    for name, ours, expected in (("mean", mean, posterior.mean.numpy()), ("logvar", logvar, posterior.logvar.numpy()),
                                 ("decode", ours_decoded, decoded)):
        _, rel = report(f"SDXL VAE {name}", np.moveaxis(np.asarray(ours), -1, 1), expected)
        assert rel < 1e-5
    back = export_torch_sdxl_vae(flat, CONFIG)
    assert set(back) == set(state) and all(np.array_equal(back[k], state[k]) for k in state)
