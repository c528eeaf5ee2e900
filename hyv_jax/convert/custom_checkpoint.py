"""HunyuanCustom transformer weights: the three released layouts (`hunyuancustom_720P`,
`hunyuancustom_audio_720P`, `hunyuancustom_editing_720P`; `mp_rank_00_model_states.pt` under
"module", or the fp8 file with its scale map) -> our parameters -> Orbax, and back."""

from collections.abc import Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource, open_checkpoint
from hyv_jax.convert.converted_model import read_converted, restore_model, save_converted
from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.fp8_weights import read_fp8_params, stored
from hyv_jax.convert.mapping import CheckpointMismatch, jax_to_torch, torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.models.custom.transformer import CustomTransformerConfig, HunyuanCustomTransformer
from hyv_jax.nn.params import abstract_instance

MODEL_KIND = "hunyuan_custom_transformer"
# config flag -> (a key only that layout has, the released folder, what the modules do)
_MODULE_FLAGS = {
    "audio_condition": ("audio_proj.proj1.weight", "hunyuancustom_audio_720P", "audio"),
    "video_condition": ("bg_in.proj.weight", "hunyuancustom_editing_720P", "video-condition"),
}


def abstract_custom(config: CustomTransformerConfig) -> HunyuanCustomTransformer:
    return abstract_instance(HunyuanCustomTransformer, config)


def check_layout(source: TensorSource, config: CustomTransformerConfig) -> None:
    """Names the config flag to change when the checkpoint's optional modules and the config
    disagree (before the full key check, whose listing would be long)."""
    if "guidance_in.mlp.0.weight" in source:
        raise CheckpointMismatch(f"{source.description} embeds guidance: a HunyuanVideo checkpoint, not HunyuanCustom; "
                                 "convert it with --model transformer")
    if config.guidance_embed:
        raise CheckpointMismatch("HunyuanCustom has no guidance embedding but the config sets guidance_embed=True; "
                                 "use --config configs/hunyuan_custom.py")
    for flag, (key, folder, what) in _MODULE_FLAGS.items():
        has, wants = key in source, getattr(config, flag)
        if has != wants:
            fix = f"--config.transformer.{flag}={has}"
            held = f"holds the {what} modules ({folder})" if has else f"has no {what} modules (not {folder})"
            raise CheckpointMismatch(f"{source.description} {held} but the config says {flag}={wants}; pass {fix}")


def read_torch_custom(source: TensorSource, config: CustomTransformerConfig, dtype=ml_dtypes.bfloat16) -> dict:
    """Our flat parameters (numpy, `dtype`) from an original-layout HunyuanCustom checkpoint."""
    check_layout(source, config)
    what = f"{source.description} does not match the HunyuanCustom transformer config"
    return torch_to_jax(source, custom_rules(config), param_shapes(abstract_custom(config)), np.dtype(dtype), what)


def export_torch_custom(flat: Mapping, config: CustomTransformerConfig) -> dict[str, np.ndarray]:
    """A PyTorch state dict (numpy values) in the original HunyuanCustom naming."""
    return jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, custom_rules(config))


def convert_custom(path: str | Path, config: CustomTransformerConfig, out_dir: str | Path, *, fp8_map=None,
                   dtype=ml_dtypes.bfloat16, overwrite: bool = False, fp8: bool = False) -> None:
    """fp8: as for convert_transformer (upstream's fp8 Linear weights kept or quantised)."""
    if fp8:
        check_layout(open_checkpoint(path, keep_fp8=True), config)
        flat = stored(read_fp8_params(path, fp8_map, lambda s, d: read_torch_custom(s, config, d), custom_rules(config),
                                      param_shapes(abstract_custom(config)), dtype, f"{path} (fp8)"))
    else:
        flat = read_torch_custom(open_checkpoint(path, fp8_map, dtype), config, dtype)
    save_converted(out_dir, flat, MODEL_KIND, config, path, dtype, overwrite=overwrite, fp8=fp8)


def read_converted_custom(directory: str | Path) -> tuple[CustomTransformerConfig, dict]:
    """The config and flat parameters (stored dtype) of a converted checkpoint."""
    return read_converted(directory, MODEL_KIND, CustomTransformerConfig.from_mapping, abstract_custom)


def restore_custom(directory: str | Path, config: CustomTransformerConfig | None = None,
                   shardings: Mapping | None = None) -> HunyuanCustomTransformer:
    """The model with parameters from a converted checkpoint (in the config's param dtype)."""
    return restore_model(directory, MODEL_KIND, CustomTransformerConfig.from_mapping, abstract_custom, config, shardings)
