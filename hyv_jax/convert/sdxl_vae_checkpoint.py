"""SDXL VAE weights (Hunyuan-DiT's t2i/sdxl-vae-fp16-fix, diffusers' AutoencoderKL layout:
`diffusion_pytorch_model.safetensors` or `.bin`, or their folder) -> our parameters -> Orbax,
and back."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource, open_checkpoint
from hyv_jax.convert.converted_model import read_converted, restore_model, save_converted
from hyv_jax.convert.hunyuan_dit_text_checkpoint import folder_weights
from hyv_jax.convert.mapping import jax_to_torch, torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.convert.sdxl_vae_table import sdxl_vae_rules
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE, SDXLVAEConfig
from hyv_jax.nn.params import abstract_instance

MODEL_KIND = "sdxl_vae"


def abstract_sdxl_vae(config: SDXLVAEConfig) -> SDXLVAE:
    return abstract_instance(SDXLVAE, config)


def read_torch_sdxl_vae(source: TensorSource, config: SDXLVAEConfig, dtype=np.float32) -> dict:
    what = f"{source.description} does not match the SDXL VAE config"
    return torch_to_jax(source, sdxl_vae_rules(config), param_shapes(abstract_sdxl_vae(config)), np.dtype(dtype), what)


def export_torch_sdxl_vae(flat: Mapping, config: SDXLVAEConfig) -> dict[str, np.ndarray]:
    return jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, sdxl_vae_rules(config))


def convert_sdxl_vae(path: str | Path, config: SDXLVAEConfig, out_dir: str | Path, *, dtype=np.float32,
                     overwrite: bool = False) -> None:
    """float32 by default (83M parameters); the compute dtype is chosen when restoring."""
    path = folder_weights(path)
    save_converted(out_dir, read_torch_sdxl_vae(open_checkpoint(path), config, dtype), MODEL_KIND, config, path, dtype,
                   overwrite=overwrite)


def read_converted_sdxl_vae(directory: str | Path) -> tuple[SDXLVAEConfig, dict]:
    return read_converted(directory, MODEL_KIND, SDXLVAEConfig.from_mapping, abstract_sdxl_vae)


def restore_sdxl_vae(directory: str | Path, config: SDXLVAEConfig | None = None, shardings: Mapping | None = None) -> SDXLVAE:
    return restore_model(directory, MODEL_KIND, SDXLVAEConfig.from_mapping, abstract_sdxl_vae, config, shardings)
