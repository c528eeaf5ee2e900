"""Whisper encoder weights from a transformers checkpoint (whisper-tiny's `model.safetensors` /
`pytorch_model.bin`, or a folder): the `encoder.*` tensors (optionally under `model.`); the
decoder and output projection, which HunyuanCustom does not use, are set aside by name."""

import numpy as np

from hyv_jax.convert.checkpoint_source import TensorSource
from hyv_jax.convert.mapping import torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.convert.whisper_table import ENCODER_PREFIX, whisper_encoder_rules
from hyv_jax.models.custom.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from hyv_jax.nn.params import abstract_instance

_UNUSED = ("decoder.", "proj_out.")


def encoder_source(source: TensorSource) -> TensorSource:
    source = source.renamed("model.")
    kept = {k: source.shape(k) for k in source.keys() if not k.startswith(_UNUSED)}
    return TensorSource(kept, source.get, source.description).renamed(ENCODER_PREFIX)


def read_torch_whisper_encoder(source: TensorSource, config: WhisperEncoderConfig, dtype=np.float32) -> dict:
    abstract = abstract_instance(WhisperEncoder, config)
    what = f"{source.description} does not match the Whisper encoder config"
    return torch_to_jax(encoder_source(source), whisper_encoder_rules(config), param_shapes(abstract), np.dtype(dtype), what)
