"""Shared by the Hunyuan-DiT tests: the tiny configs and diffusers' models with our weights."""

import jax.numpy as jnp
import numpy as np
from flax import nnx
from helpers import torch_random_init

from configs import load_config
from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.hunyuan_dit_checkpoint import read_torch_hunyuan_dit
from hyv_jax.convert.model_state import param_shapes, params_tree
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAEConfig

CONFIG = load_config("configs/tiny_hunyuan_dit.py")
TINY = HunyuanDiTConfig.from_mapping(CONFIG.transformer)
TINY_VAE = SDXLVAEConfig.from_mapping(CONFIG.vae)


def diffusers_config(config: HunyuanDiTConfig) -> dict:
    """HunyuanDiT2DModel's arguments for one of our configs."""
    return dict(num_attention_heads=config.heads, attention_head_dim=config.head_dim, in_channels=config.in_channels,
                patch_size=config.patch_size, hidden_size=config.hidden_size, num_layers=config.depth, mlp_ratio=config.mlp_ratio,
                learn_sigma=config.learn_sigma, cross_attention_dim=config.text_states_dim,
                cross_attention_dim_t5=config.text_states_dim_t5, pooled_projection_dim=config.pooler_out_dim,
                text_len=config.text_len, text_len_t5=config.text_len_t5,
                use_style_cond_and_image_meta_size=config.size_style_cond)


def model_with(make, flat: dict) -> nnx.Module:
    """The model `make()` builds, holding the parameters `flat` (its initialisers never run)."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    nnx.replace_by_pure_dict(state, params_tree({p: jnp.asarray(v) for p, v in flat.items()}))
    return nnx.merge(graphdef, state)


def random_model(make, seed: int, scale: float = 0.1) -> nnx.Module:
    """`make()` with every parameter drawn N(0, scale^2) on the host: random non-zero weights
    without compiling the initialisers."""
    rng = np.random.default_rng(seed)
    shapes = param_shapes(nnx.eval_shape(make))
    return model_with(make, {p: (scale * rng.standard_normal(s)).astype(np.float32) for p, s in shapes.items()})


def diffusers_pair(config: HunyuanDiTConfig, seed: int = 0):
    """(diffusers model, our model) holding the same random non-zero weights."""
    from diffusers import HunyuanDiT2DModel

    ref = HunyuanDiT2DModel(**diffusers_config(config)).eval()
    torch_random_init(ref, seed)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    flat = read_torch_hunyuan_dit(from_arrays(state, "diffusers"), config, np.float32)
    return ref, model_with(lambda: HunyuanDiT(config, rngs=nnx.Rngs(0)), flat)
