"""LLaVA's image side from the HF folder of HunyuanCustom's llava-llama-3-8b (safetensors shards
or .bin, names optionally under `model.`): the CLIP vision tower and the projector."""

import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource
from hyv_jax.convert.llava_vision_table import TOWER, llava_vision_rules, unused_by_image_encoder
from hyv_jax.convert.mapping import torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.models.custom.clip_vision import ClipVisionConfig, LlavaImageEncoder
from hyv_jax.nn.params import abstract_instance


def _hub_name(name: str) -> str:
    """transformers >= 5 saves the tower as `vision_tower.*`; the hub folders (and our table)
    say `vision_tower.vision_model.*`."""
    if name.startswith("vision_tower.") and not name.startswith(f"{TOWER}."):
        return f"{TOWER}.{name.removeprefix('vision_tower.')}"
    return name


def read_torch_llava_vision(source: TensorSource, config: ClipVisionConfig, dtype=np.float16) -> dict:
    """Our flat LlavaImageEncoder parameters (numpy, `dtype`) from a LLaVA checkpoint."""
    full = source.renamed("model.")
    names = {_hub_name(k): k for k in full.keys() if not unused_by_image_encoder(_hub_name(k), config)}
    source = TensorSource({n: full.shape(k) for n, k in names.items()}, lambda n: full.get(names[n]), full.description)
    abstract = abstract_instance(LlavaImageEncoder, config)
    what = f"{source.description} does not match the LLaVA vision config"
    return torch_to_jax(source, llava_vision_rules(config), param_shapes(abstract), np.dtype(dtype), what)
