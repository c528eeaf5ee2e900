"""HunyuanVideo VAE weights: `pytorch_model.pt` (optionally wrapped in "state_dict", names
optionally prefixed `vae.`) or diffusers safetensors (same names) -> our parameters -> Orbax,
and back out to the PyTorch naming."""

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource, open_checkpoint
from hyv_jax.convert.mapping import jax_to_torch, torch_to_jax
from hyv_jax.convert.converted_model import checked_info, read_converted, restore_model, save_converted
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.convert.vae_table import vae_rules
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.nn.params import abstract_instance

MODEL_KIND = "hunyuan_video_vae"
PREFIX = "vae."


def abstract_vae(config: VAEConfig) -> CausalVideoVAE:
    return abstract_instance(CausalVideoVAE, config)


def read_torch_vae(source: TensorSource, config: VAEConfig, dtype=np.float32) -> dict:
    """Our flat parameters (numpy, `dtype`) from a PyTorch VAE state dict."""
    if any(k.startswith(PREFIX) for k in source.keys()):
        source = source.renamed(PREFIX)
    what = f"{source.description} does not match the VAE config"
    return torch_to_jax(source, vae_rules(config), param_shapes(abstract_vae(config)), np.dtype(dtype), what)


def export_torch_vae(flat: Mapping, config: VAEConfig) -> dict[str, np.ndarray]:
    """A PyTorch state dict (numpy values) in the upstream / diffusers naming."""
    return jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, vae_rules(config))


def convert_vae(path: str | Path, config: VAEConfig, out_dir: str | Path, *, dtype=np.float32, overwrite: bool = False) -> None:
    """Converts a checkpoint to Orbax. float32 by default: the VAE is small, and the compute
    dtype is chosen when restoring."""
    save_converted(out_dir, read_torch_vae(open_checkpoint(path), config, dtype), MODEL_KIND, config, path, dtype, overwrite=overwrite)


def read_converted_vae(directory: str | Path) -> tuple[VAEConfig, dict]:
    """The config and flat parameters (stored dtype) of a converted checkpoint."""
    return read_converted(directory, MODEL_KIND, VAEConfig.from_mapping, abstract_vae)


def restore_vae(directory: str | Path, config: VAEConfig | None = None, shardings: Mapping | None = None) -> CausalVideoVAE:
    """The model with parameters from a converted checkpoint (in the config's param dtype).
    A config whose latent scaling factor differs from the stored one is refused: the factor
    belongs to the trained weights, and a wrong one silently rescales every latent."""
    if config is not None:
        stored = checked_info(directory, MODEL_KIND)["config"].get("scaling_factor")
        if stored is not None and stored != config.scaling_factor:
            raise ValueError(f"the VAE in {directory} was trained with latent scaling factor {stored}, the config says "
                             f"{config.scaling_factor}: set vae.scaling_factor={stored} (e.g. --config.vae.scaling_factor={stored})")
    return restore_model(directory, MODEL_KIND, VAEConfig.from_mapping, abstract_vae, config, shardings)
