"""Text encoder weights from Hugging Face folders (one .safetensors file, or shards with their
index json; .bin/.pt too) -> our parameters -> Orbax, with the tokenizer files alongside.

LLM: a plain `LlamaModel` (names without prefix), a `LlamaForCausalLM` (`model.`), or the full
LLaVA checkpoint, older (`language_model.model.`) or newer (`model.language_model.`) naming; the
vision tower, projector and lm_head are left out, and so are the decoder layers past
`output_layer` (and the final norm unless it is used). CLIP: a `CLIPTextModel` or the text half
of a full `CLIPModel` (`text_model.`; vision tower and projections left out). Every other key
must map onto the model, as for the other converters.
"""

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np
from flax import nnx

from hyv_jax.convert.checkpoint_source import TensorSource, open_checkpoint
from hyv_jax.convert.clip_text_table import clip_text_rules
from hyv_jax.convert.converted_model import read_converted, restore_model, save_converted
from hyv_jax.convert.llama_table import llama_rules
from hyv_jax.convert.mapping import CheckpointMismatch, jax_to_torch, torch_to_jax
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.models.text.clip_text import CLIPTextConfig, CLIPTextModel
from hyv_jax.models.text.llama import LlamaConfig, LlamaModel
from hyv_jax.nn.params import abstract_instance

TOKENIZER_FILE = "tokenizer.json"
# copied when present: they name the pad token when tokenizer.json does not
TOKENIZER_EXTRAS = ("tokenizer_config.json", "special_tokens_map.json")


@dataclasses.dataclass(frozen=True)
class TextCheckpoint:
    """Where one encoder sits inside the checkpoints that contain it."""

    kind: str  # recorded in the converted checkpoint's info file
    section: str  # its part of the text_encoder config
    what: str
    model: Callable  # config, rngs -> module
    config_from_mapping: Callable
    rules: Callable  # config -> [Rule]
    prefixes: tuple[str, ...]  # tried in order; the first with `marker` under it wins
    marker: str
    unused: tuple[str, ...]  # key prefixes of other parts of the checkpoint, left out
    unused_inside: Callable  # (stripped name, config) -> True for keys of the encoder we do not keep
    model_type: str  # transformers' model_type of the encoder's config
    hf_fields: tuple[tuple[str, str], ...]  # (transformers config.json name, our config name)


def _llama_unused(name: str, config: LlamaConfig) -> bool:
    layer = re.match(r"layers\.(\d+)\.", name)
    if layer and config.output_layer <= int(layer.group(1)) < config.num_layers:
        return True
    return name.endswith("rotary_emb.inv_freq") or (name == "norm.weight" and config.output_layer < config.num_layers)


LLM = TextCheckpoint(
    kind="llama_text_encoder", section="llm", what="Llama / LLaVA language model", model=LlamaModel,
    config_from_mapping=LlamaConfig.from_mapping, rules=llama_rules,
    prefixes=("model.language_model.", "language_model.model.", "model.", ""), marker="embed_tokens.weight",
    unused=("lm_head.", "language_model.lm_head.", "vision_tower.", "model.vision_tower.", "multi_modal_projector.",
            "model.multi_modal_projector.", "image_newline"),
    unused_inside=_llama_unused,
    model_type="llama",
    hf_fields=(("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
               ("num_hidden_layers", "num_layers"), ("num_attention_heads", "heads"), ("num_key_value_heads", "kv_heads"),
               ("head_dim", "head_dim"), ("rope_theta", "rope_theta"), ("rms_norm_eps", "rms_norm_eps")),
)
CLIP = TextCheckpoint(
    kind="clip_text_encoder", section="clip", what="CLIP text model", model=CLIPTextModel,
    config_from_mapping=CLIPTextConfig.from_mapping, rules=clip_text_rules,
    prefixes=("text_model.", ""), marker="embeddings.token_embedding.weight",
    unused=("vision_model.", "visual_projection.", "text_projection.", "logit_scale"),
    unused_inside=lambda name, config: name == "embeddings.position_ids",
    model_type="clip_text_model",
    hf_fields=(("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
               ("num_hidden_layers", "num_layers"), ("num_attention_heads", "heads"),
               ("max_position_embeddings", "max_positions"), ("layer_norm_eps", "layer_norm_eps"),
               ("hidden_act", "hidden_act"), ("eos_token_id", "eos_token_id")),
)


def abstract_model(spec: TextCheckpoint, config) -> nnx.Module:
    return abstract_instance(spec.model, config)


def _encoder_source(source: TensorSource, spec: TextCheckpoint, config, what: str) -> TensorSource:
    """The encoder's tensors under the table's names; keys of no known part stay as they are,
    so the strict check reports them. Checks the encoder's depth against the config."""
    prefix = next((p for p in spec.prefixes if p + spec.marker in source), None)
    if prefix is None:
        sample = sorted(source.keys())[:5]
        raise CheckpointMismatch(
            f"{source.description} is not a {spec.what} checkpoint: no {spec.marker} under any of the prefixes "
            f"{[p or '(none)' for p in spec.prefixes]} (keys look like {sample}); pass the folder of that model "
            f"(convert_torch_weights.py --model llm for Llama/LLaVA, --model clip for CLIP)"
        )
    names, layers = {}, set()
    for key in source.keys():
        if key.startswith(spec.unused):
            continue
        inside = key.startswith(prefix)
        name = key[len(prefix):] if inside else key
        if inside and (m := re.match(r"(?:encoder\.)?layers\.(\d+)\.", name)):
            layers.add(int(m.group(1)))
        if not (inside and spec.unused_inside(name, config)):
            names[name] = key
    if layers and max(layers) + 1 != config.num_layers:
        raise CheckpointMismatch(f"{what}: the checkpoint has {max(layers) + 1} layers, the config {config.num_layers}; "
                                 f"set num_layers in the text_encoder config to match")
    return TensorSource({n: source.shape(k) for n, k in names.items()}, lambda n: source.get(names[n]), source.description)


def read_torch_text(source: TensorSource, spec: TextCheckpoint, config, dtype=ml_dtypes.bfloat16) -> dict:
    """Our flat parameters (numpy, `dtype`) of one encoder from a PyTorch checkpoint."""
    what = f"{source.description} does not match the {spec.what} config"
    encoder = _encoder_source(source, spec, config, what)
    return torch_to_jax(encoder, spec.rules(config), param_shapes(abstract_model(spec, config)), np.dtype(dtype), what)


def export_torch_text(flat: Mapping, spec: TextCheckpoint, config) -> dict[str, np.ndarray]:
    """A PyTorch state dict in transformers' names without prefix (`LlamaModel` / the inside of
    `text_model.`); only the layers the model keeps."""
    return jax_to_torch({p: np.asarray(v) for p, v in flat.items()}, spec.rules(config))


def _tokenizer_folder(path: Path) -> Path:
    folder = path if path.is_dir() else path.parent
    if not (folder / TOKENIZER_FILE).exists():
        raise FileNotFoundError(f"no {TOKENIZER_FILE} in {folder}: the text encoders need the tokenizer of their Hugging Face "
                                f"folder; convert from that folder (or put its {TOKENIZER_FILE} next to the weights)")
    return folder


def check_hf_config(folder: Path, spec: TextCheckpoint, config) -> None:
    """The folder's transformers config.json (its `text_config` for LLaVA / CLIPModel), where
    present, must describe this model and agree with our config; the error names the overrides."""
    path = folder / "config.json"
    if not path.exists():
        return
    hf = json.loads(path.read_text())
    hf = hf.get("text_config") or hf
    if hf.get("model_type", spec.model_type) != spec.model_type:
        raise CheckpointMismatch(f"{path} is a {hf['model_type']!r} model, not a {spec.what} ({spec.model_type!r}); "
                                 f"pass the folder of that model (--model llm for Llama/LLaVA, --model clip for CLIP)")
    differ = [(ours, hf[theirs]) for theirs, ours in spec.hf_fields
              if hf.get(theirs) is not None and hf[theirs] != getattr(config, ours)]
    if differ:
        raise CheckpointMismatch(
            f"{path} describes another {spec.what} than the config: "
            + ", ".join(f"{k} {v!r} (config: {getattr(config, k)!r})" for k, v in differ)
            + "; set them in the config, e.g. " + " ".join(f"--config.text_encoder.{spec.section}.{k}={v!r}" for k, v in differ))


def convert_text(path: str | Path, spec: TextCheckpoint, config, out_dir: str | Path, *, dtype=np.float16,
                 overwrite: bool = False) -> None:
    """Converts one encoder to Orbax (float16 by default: upstream runs the text encoders in fp16,
    whose 10 mantissa bits bfloat16 would cut to 7) and copies the tokenizer files."""
    path = Path(path)
    folder = _tokenizer_folder(path)
    check_hf_config(folder, spec, config)
    flat = read_torch_text(open_checkpoint(path), spec, config, dtype)
    tokenizer = [folder / name for name in (TOKENIZER_FILE, *TOKENIZER_EXTRAS) if (folder / name).exists()]
    save_converted(out_dir, flat, spec.kind, config, path, dtype, overwrite=overwrite, files=tokenizer)


def read_converted_text(directory: str | Path, spec: TextCheckpoint) -> tuple[object, dict]:
    return read_converted(directory, spec.kind, spec.config_from_mapping, lambda c: abstract_model(spec, c))


def restore_text(directory: str | Path, spec: TextCheckpoint, config=None, shardings: Mapping | None = None) -> nnx.Module:
    """The encoder with parameters from a converted checkpoint (in the config's param dtype),
    each placed with `shardings` (parameter path -> sharding) when given."""
    return restore_model(directory, spec.kind, spec.config_from_mapping, lambda c: abstract_model(spec, c), config, shardings)
