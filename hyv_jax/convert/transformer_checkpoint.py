"""HunyuanVideo transformer weights: PyTorch checkpoints (original or diffusers layout, fp8
with a scale map) -> our parameters -> Orbax, and back out to either PyTorch layout."""

from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource, open_checkpoint
from hyv_jax.convert.mapping import jax_to_torch, regroup_state, regrouped_source, torch_to_jax
from hyv_jax.convert.converted_model import read_converted, restore_model, save_converted
from hyv_jax.convert.fp8_weights import read_fp8_params, stored
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.convert.transformer_table import diffusers_regroups, transformer_rules
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.nn.params import abstract_instance

MODEL_KIND = "hunyuan_video_transformer"
LAYOUTS = ("original", "diffusers")
_LAYOUT_MARKERS = {"original": "double_blocks.", "diffusers": "transformer_blocks."}


def detect_layout(source: TensorSource) -> str:
    found = [name for name, marker in _LAYOUT_MARKERS.items() if any(k.startswith(marker) for k in source.keys())]
    if len(found) != 1:
        raise ValueError(
            f"{source.description}: cannot tell the checkpoint layout (found {found or 'neither'} of "
            f"{list(_LAYOUT_MARKERS.values())} key prefixes); is this a HunyuanVideo transformer checkpoint?"
        )
    return found[0]


def abstract_transformer(config: TransformerConfig) -> HunyuanVideoTransformer:
    return abstract_instance(HunyuanVideoTransformer, config)


def read_torch_transformer(source: TensorSource, config: TransformerConfig, dtype=ml_dtypes.bfloat16) -> dict:
    """Our flat parameters (numpy, `dtype`) from a PyTorch checkpoint in either layout."""
    layout = detect_layout(source)
    what = f"{source.description} ({layout} layout) does not match the transformer config"
    if layout == "diffusers":
        source = regrouped_source(source, diffusers_regroups(config), what)
    return torch_to_jax(source, transformer_rules(config), param_shapes(abstract_transformer(config)), np.dtype(dtype), what)


def export_torch_transformer(flat: Mapping, config: TransformerConfig, layout: str = "original") -> dict[str, np.ndarray]:
    """A PyTorch state dict (numpy values) of our parameters in the `layout` naming."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    state = jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, transformer_rules(config))
    return regroup_state(state, diffusers_regroups(config)) if layout == "diffusers" else state


def convert_transformer(path: str | Path, config: TransformerConfig, out_dir: str | Path, *, fp8_map=None, dtype=ml_dtypes.bfloat16,
                        overwrite: bool = False, fp8: bool = False) -> None:
    """fp8: store upstream's fp8 Linear weights as float8_e4m3fn + scales (convert/fp8_weights.py):
    kept from an fp8 release with its `fp8_map`, else quantised as upstream does."""
    source = open_checkpoint(path, keep_fp8=True) if fp8 else open_checkpoint(path, fp8_map, dtype)
    layout = detect_layout(source)
    if fp8:
        if fp8_map is not None and layout != "original":
            raise ValueError(f"{path}: an fp8 scale map goes with the original layout (the fp8 release), not {layout}")
        flat = stored(read_fp8_params(path, fp8_map, lambda s, d: read_torch_transformer(s, config, d), transformer_rules(config),
                                      param_shapes(abstract_transformer(config)), dtype, f"{path} (fp8)"))
    else:
        flat = read_torch_transformer(source, config, dtype)
    save_converted(out_dir, flat, MODEL_KIND, config, path, dtype, overwrite=overwrite, layout=layout, fp8=fp8)


def read_converted_transformer(directory: str | Path) -> tuple[TransformerConfig, dict]:
    """The config and flat parameters (stored dtype) of a converted checkpoint."""
    return read_converted(directory, MODEL_KIND, TransformerConfig.from_mapping, abstract_transformer)


def restore_transformer(directory: str | Path, config: TransformerConfig | None = None, shardings: Mapping | None = None) -> HunyuanVideoTransformer:
    """The model with parameters from a converted checkpoint (in the config's param dtype)."""
    return restore_model(directory, MODEL_KIND, TransformerConfig.from_mapping, abstract_transformer, config, shardings)
