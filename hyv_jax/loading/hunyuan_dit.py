"""Hunyuan-DiT's models ready to run: the transformer, the SDXL VAE and the two text encoders
from their converted folders, or with random weights where the config allows (numpy draws in
the PyTorch layout, as loading.random_weights does for every model), each parameter placed
straight into its sharding."""

from pathlib import Path

from jax.sharding import Mesh

from hyv_jax.convert.hunyuan_dit_checkpoint import (abstract_hunyuan_dit, export_torch_hunyuan_dit, read_torch_hunyuan_dit,
                                                   restore_hunyuan_dit)
from hyv_jax.convert.hunyuan_dit_text_checkpoint import SPECS
from hyv_jax.convert.sdxl_vae_checkpoint import abstract_sdxl_vae, export_torch_sdxl_vae, read_torch_sdxl_vae, restore_sdxl_vae
from hyv_jax.convert.text_checkpoint import abstract_model, export_torch_text, read_torch_text
from hyv_jax.loading.models import lazy_text_encoder, random_model, shardings_for
from hyv_jax.models.hunyuan_dit.text_encoder import HunyuanDiTTextEncoder
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE, SDXLVAEConfig


def _load(abstract, folder, restore, export, read, param_dtype: str, seed: int, mesh: Mesh | None):
    shardings = shardings_for(abstract, mesh)
    if folder is not None:
        return restore(folder, shardings)
    return random_model(abstract, export, read, param_dtype, seed, shardings)


def load_hunyuan_dit(config: HunyuanDiTConfig, folder: str | Path | None = None, *, seed: int = 0,
                     mesh: Mesh | None = None) -> HunyuanDiT:
    """The transformer from a converted folder or random (from `seed`), sharded over `mesh`."""
    return _load(abstract_hunyuan_dit(config), folder, lambda d, s: restore_hunyuan_dit(d, config, s),
                 lambda flat: export_torch_hunyuan_dit(flat, config), lambda src, dtype: read_torch_hunyuan_dit(src, config, dtype),
                 config.param_dtype, seed, mesh)


def load_sdxl_vae(config: SDXLVAEConfig, folder: str | Path | None = None, *, seed: int = 0, mesh: Mesh | None = None) -> SDXLVAE:
    return _load(abstract_sdxl_vae(config), folder, lambda d, s: restore_sdxl_vae(d, config, s),
                 lambda flat: export_torch_sdxl_vae(flat, config), lambda src, dtype: read_torch_sdxl_vae(src, config, dtype),
                 config.param_dtype, seed, mesh)


def load_hunyuan_dit_text_encoder(config, *, bert_dir=None, mt5_dir=None, seed: int = 0,
                                  mesh: Mesh | None = None) -> HunyuanDiTTextEncoder:
    """config: the `text_encoder` section of a Hunyuan-DiT config (configs/hunyuan_dit.py).
    bert_dir / mt5_dir: folders written by `convert_torch_weights.py to-jax --model bert|mt5`.
    None: random weights (from `seed`) with the tokenizers the config ships (configs/
    tiny_hunyuan_dit.py). mesh: shard the parameters by their logical axes. Tokenizers are read
    here; the weights on the first `encode`, and again after `release`."""
    if "bert" not in config or "mt5" not in config:
        raise ValueError("pass the text_encoder section of a Hunyuan-DiT config (config.text_encoder), with bert and mt5")
    parts = []
    for offset, (name, directory, max_length) in enumerate((("bert", bert_dir, config.bert_max_length),
                                                           ("mt5", mt5_dir, config.mt5_max_length))):
        spec = SPECS[name]
        model_config = spec.config_from_mapping(config[name])

        def random_weights(shardings, s=spec, c=model_config, r=seed + offset):
            return random_model(abstract_model(s, c), lambda flat: export_torch_text(flat, s, c),
                                lambda source, dtype: read_torch_text(source, s, c, dtype), c.param_dtype, r, shardings)

        parts.append(lazy_text_encoder(name, spec, model_config, directory, config, max_length, mesh, random_weights,
                                       lambda states: states, "--config configs/hunyuan_dit.py "))
    (bert, bert_tokenizer), (mt5, mt5_tokenizer) = parts
    return HunyuanDiTTextEncoder(bert, mt5, bert_tokenizer, mt5_tokenizer)
