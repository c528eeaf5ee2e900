"""Hunyuan-DiT transformer weights: the official checkpoints (`t2i/model/pytorch_model_ema.pt`,
`_module.pt`, `_distill.pt`: bare state dicts; training saves `{"ema": ..., "module": ...}`,
picked by `load_key` as hydit/inference.py:load_torch_weights does) or the diffusers layout
(`transformer/diffusion_pytorch_model*.safetensors`) -> our parameters -> Orbax, and back out
to either layout."""

from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from hyv_jax.convert.checkpoint_source import TORCH_SUFFIXES, TensorSource, open_checkpoint, torch_to_numpy
from hyv_jax.convert.converted_model import read_converted, restore_model, save_converted
from hyv_jax.convert.hunyuan_dit_table import diffusers_regroups, hunyuan_dit_rules
from hyv_jax.convert.mapping import jax_to_torch, regroup_state, regrouped_source, torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig
from hyv_jax.nn.params import abstract_instance

MODEL_KIND = "hunyuan_dit_transformer"
LAYOUTS = ("original", "diffusers")
LOAD_KEYS = ("ema", "module", "distill", "merge")
_LAYOUT_MARKERS = {"original": "x_embedder.proj.weight", "diffusers": "pos_embed.proj.weight"}


def detect_layout(source: TensorSource) -> str:
    found = [name for name, marker in _LAYOUT_MARKERS.items() if marker in source]
    if len(found) != 1:
        raise ValueError(f"{source.description}: cannot tell the checkpoint layout (found {found or 'neither'} of "
                         f"{list(_LAYOUT_MARKERS.values())}); is this a Hunyuan-DiT transformer checkpoint?")
    return found[0]


def open_dit_checkpoint(path: str | Path, load_key: str = "ema") -> TensorSource:
    """A Hunyuan-DiT checkpoint as a tensor source. A PyTorch file holding several state dicts
    ({"ema": ..., "module": ...}) gives the one named `load_key` (upstream's --load-key)."""
    path = Path(path)
    if path.suffix not in TORCH_SUFFIXES or not path.is_file():
        return open_checkpoint(path)
    import torch

    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if not any(hasattr(v, "shape") for v in state.values()):
        if load_key not in state:
            raise KeyError(f"{path} holds the state dicts {sorted(state)}, not {load_key!r}: pass --load-key with one of them")
        state = state[load_key]
    tensors = {k: v for k, v in state.items() if hasattr(v, "shape")}
    return TensorSource({k: tuple(v.shape) for k, v in tensors.items()}, lambda k: torch_to_numpy(tensors[k]), f"{path} [{load_key}]")


def from_section(section, read, marker: str):
    """read(section) of a Hunyuan-DiT config section, which holds `marker`; another model's
    section (the converter's default config is HunyuanVideo's) fails with what to pass."""
    if marker not in section:
        raise ValueError("the config is not a Hunyuan-DiT one: pass --config configs/hunyuan_dit.py "
                         "(hunyuan_dit_v1_1.py for v1.0/v1.1 weights, tiny_hunyuan_dit.py for the tiny model)")
    return read(section)


def abstract_hunyuan_dit(config: HunyuanDiTConfig) -> HunyuanDiT:
    return abstract_instance(HunyuanDiT, config)


def read_torch_hunyuan_dit(source: TensorSource, config: HunyuanDiTConfig, dtype=ml_dtypes.bfloat16) -> dict:
    """Our flat parameters (numpy, `dtype`) from a PyTorch checkpoint in either layout."""
    layout = detect_layout(source)
    what = f"{source.description} ({layout} layout) does not match the Hunyuan-DiT config"
    if "style_embedder.weight" in source or "time_extra_emb.style_embedder.weight" in source:
        if not config.size_style_cond:
            raise ValueError(f"{source.description} has a style embedder (Hunyuan-DiT <= v1.1): use configs/hunyuan_dit_v1_1.py "
                             "(or --config.transformer.size_style_cond=True)")
    elif config.size_style_cond:
        raise ValueError(f"{source.description} has no style embedder (Hunyuan-DiT >= v1.2): use configs/hunyuan_dit.py")
    if layout == "diffusers":
        source = regrouped_source(source, diffusers_regroups(config), what)
    return torch_to_jax(source, hunyuan_dit_rules(config), param_shapes(abstract_hunyuan_dit(config)), np.dtype(dtype), what)


def export_torch_hunyuan_dit(flat: Mapping, config: HunyuanDiTConfig, layout: str = "original") -> dict[str, np.ndarray]:
    """A PyTorch state dict (numpy values) of our parameters in the `layout` naming."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    state = jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, hunyuan_dit_rules(config))
    return regroup_state(state, diffusers_regroups(config)) if layout == "diffusers" else state


def convert_hunyuan_dit(path: str | Path, config: HunyuanDiTConfig, out_dir: str | Path, *, load_key: str = "ema",
                        dtype=ml_dtypes.bfloat16, overwrite: bool = False) -> None:
    source = open_dit_checkpoint(path, load_key)
    flat = read_torch_hunyuan_dit(source, config, dtype)
    save_converted(out_dir, flat, MODEL_KIND, config, path, dtype, overwrite=overwrite, layout=detect_layout(source))


def read_converted_hunyuan_dit(directory: str | Path) -> tuple[HunyuanDiTConfig, dict]:
    return read_converted(directory, MODEL_KIND, HunyuanDiTConfig.from_mapping, abstract_hunyuan_dit)


def restore_hunyuan_dit(directory: str | Path, config: HunyuanDiTConfig | None = None, shardings: Mapping | None = None) -> HunyuanDiT:
    """The model with parameters from a converted checkpoint (in the config's param dtype)."""
    return restore_model(directory, MODEL_KIND, HunyuanDiTConfig.from_mapping, abstract_hunyuan_dit, config, shardings)
