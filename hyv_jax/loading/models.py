"""Each model of the pipelines from its converted folder, or with random weights where the
config allows, every parameter placed straight into its sharding (`shardings_for`: by logical
axes over a mesh, or all on one device), so a model never sits whole on one device first."""

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from hyv_jax.convert.converted_model import checked_info
from hyv_jax.convert.custom_checkpoint import MODEL_KIND as CUSTOM_KIND
from hyv_jax.convert.custom_checkpoint import abstract_custom, export_torch_custom, read_torch_custom, restore_custom
from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.fp8_weights import fp8_groups, stored_dtypes
from hyv_jax.convert.llava_vision_checkpoint import read_torch_llava_vision
from hyv_jax.convert.checkpoint_source import open_checkpoint
from hyv_jax.convert.model_state import param_shapes, params_tree
from hyv_jax.convert.orbax_io import read_info, restore_params
from hyv_jax.convert.text_checkpoint import CLIP, LLM, TextCheckpoint, abstract_model, restore_text
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND as TRANSFORMER_KIND
from hyv_jax.convert.transformer_checkpoint import abstract_transformer, export_torch_transformer, read_torch_transformer, restore_transformer
from hyv_jax.convert.transformer_table import transformer_rules
from hyv_jax.convert.vae_checkpoint import abstract_vae, export_torch_vae, read_torch_vae, restore_vae
from hyv_jax.convert.whisper_checkpoint import read_torch_whisper_encoder
from hyv_jax.loading.memory_modes import MemoryMode, replicated
from hyv_jax.loading.random_weights import device_random_state, random_params
from hyv_jax.lora.merge import merge_updates
from hyv_jax.lora.terms import LoraUpdates
from hyv_jax.models.custom.clip_vision import ClipVisionConfig, LlavaImageEncoder
from hyv_jax.models.custom.custom_text_encoder import CustomTextEncoder
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.custom.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from hyv_jax.models.text.clip_text import CLIPTextConfig
from hyv_jax.models.text.llama import LlamaConfig
from hyv_jax.models.text.text_encoder import ASSETS, LazyEncoder, TextEncoder
from hyv_jax.models.text.tokenizer import TextTokenizer
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.nn.fp8 import Fp8Weight
from hyv_jax.nn.params import abstract_instance
from hyv_jax.nn.stack import to_device
from hyv_jax.parallel.logical_axes import param_shardings


def shardings_for(abstract: nnx.Module, mesh: Mesh | None) -> dict:
    """{parameter path: sharding}: by the parameters' logical axes over `mesh`, or every
    parameter on this process's first device."""
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        return {path: device for path in param_shapes(abstract)}
    return param_shardings(abstract, mesh)


def placed(abstract: nnx.Module, flat: Mapping, shardings: Mapping) -> nnx.Module:
    """The abstract model with host (numpy) parameters `flat` put onto their shardings (every
    process passes the same values)."""
    graphdef, state = nnx.split(abstract)
    arrays = {p: jax.device_put(np.asarray(v), shardings[p]) for p, v in flat.items()}
    nnx.replace_by_pure_dict(state, params_tree(arrays))
    return nnx.merge(graphdef, state)


@dataclasses.dataclass(frozen=True)
class _TransformerKind:
    abstract: Callable
    export: Callable
    read: Callable
    restore: Callable
    rules: Callable
    model_kind: str


_TRANSFORMERS = {
    TransformerConfig: _TransformerKind(abstract_transformer, export_torch_transformer, read_torch_transformer, restore_transformer,
                                        transformer_rules, TRANSFORMER_KIND),
    CustomTransformerConfig: _TransformerKind(abstract_custom, export_torch_custom, read_torch_custom, restore_custom, custom_rules,
                                              CUSTOM_KIND),
}


def load_transformer(config: TransformerConfig, folder: str | Path | None = None, *, seed: int = 0,
                     mesh: Mesh | None = None, memory: MemoryMode = MemoryMode(), random_on_device: bool = False,
                     loras: Sequence[tuple[LoraUpdates, float]] = ()) -> HunyuanVideoTransformer:
    """The text-to-video or HunyuanCustom DiT (by the config's type) from a converted folder, or
    with random weights from `seed` (random_weights.py: the tiny configs' numpy draw, or with
    `random_on_device` a draw on the devices for the real sizes); parameters sharded over `mesh`
    by their logical axes and held as `memory` says (resident, fp8, blocks offloaded to host
    memory). `loras` (read with hyv_jax.lora.merge.read_lora_files, with their scales) are
    merged into the weights as soon as they are loaded, before fp8 quantisation or offload."""
    kind = _TRANSFORMERS[type(config)]
    abstract = kind.abstract(config)
    shardings = shardings_for(abstract, mesh)
    groups = fp8_groups(kind.rules(config))
    if folder is not None and read_info(folder).get("fp8"):
        if loras:
            raise ValueError(f"{folder} holds fp8 weights (converted with --fp8) and LoRAs merge into full-precision ones: "
                             "convert the checkpoint without --fp8 and sample with --use-fp8 (quantised after the merge)")
        return _restore_fp8(kind, config, folder, memory, shardings, groups)
    staging = memory.staging(shardings)
    if folder is not None:
        model = kind.restore(folder, config, staging)
    elif random_on_device:
        model = nnx.merge(nnx.graphdef(abstract), device_random_state(abstract, staging, seed))
    else:
        model = random_model(abstract, lambda flat: kind.export(flat, config), lambda s, d: kind.read(s, config, d),
                             config.param_dtype, seed, staging)
    # Here the weights are loaded in their shardings and the model dtype, not yet quantised or
    # offloaded (in host memory when they will be): the point where LoRA deltas merge.
    merge_updates(model, loras)
    return memory.place(model, shardings, groups)


def _restore_fp8(kind: _TransformerKind, config, folder, memory: MemoryMode, shardings: Mapping, groups) -> nnx.Module:
    """A folder converted with --fp8: the fp8 values and scales restored straight into their
    target memory, kept as Fp8Weight (memory.fp8) or dequantised as upstream (else)."""
    checked_info(folder, kind.model_kind)
    graphdef, state = nnx.split(kind.abstract(config))
    shapes = param_shapes(nnx.merge(graphdef, state))
    dtype = np.dtype(config.param_dtype)
    layout = stored_dtypes(shapes, groups, dtype)

    def target(saved):  # a parameter's own target; its w8 likewise, its per-layer scale replicated
        path = saved if saved in shapes else saved[:-1]
        sharding = memory.target(path, shardings[path])
        return replicated(sharding) if saved[-1] == "scale" and saved not in shapes else sharding

    flat = restore_params(folder, {p: s for p, (s, _) in layout.items()}, {p: d for p, (_, d) in layout.items()},
                          {p: target(p) for p in layout})
    params = {}
    for path in shapes:
        if path not in flat:
            weight = Fp8Weight(flat[(*path, "w8")], flat[(*path, "scale")], dtype)
            params[path] = weight if memory.fp8 else jax.jit(_dequantized, out_shardings=target(path))(weight)
        else:
            params[path] = flat[path]
    nnx.replace_by_pure_dict(state, params_tree(params))
    return nnx.merge(graphdef, state)


def _dequantized(weight: Fp8Weight) -> jax.Array:
    return Fp8Weight(to_device(weight.w8), to_device(weight.scale), weight.dtype).dequantize()


@dataclasses.dataclass(frozen=True)
class TransformerLoader:
    """load_transformer's arguments, for a pipeline that places the DiT when it needs it (after
    the text encoders ran) and may free it again."""

    config: TransformerConfig
    folder: str | Path | None = None
    seed: int = 0
    mesh: Mesh | None = None
    memory: MemoryMode = MemoryMode()
    random_on_device: bool = False
    loras: tuple = ()  # [(LoraUpdates, scale)], merged on each placement

    def abstract(self) -> HunyuanVideoTransformer:
        return _TRANSFORMERS[type(self.config)].abstract(self.config)

    def placed_abstract(self) -> tuple[nnx.GraphDef, nnx.State]:
        """The graph and the state loading gives, as ShapeDtypeStructs with their shardings and
        memory kinds (loading nothing): what a memory plan compiles against."""
        kind = _TRANSFORMERS[type(self.config)]
        abstract = kind.abstract(self.config)
        return nnx.split(abstract)[0], self.memory.abstract_state(abstract, shardings_for(abstract, self.mesh),
                                                                   fp8_groups(kind.rules(self.config)))

    def __call__(self) -> HunyuanVideoTransformer:
        return load_transformer(self.config, self.folder, seed=self.seed, mesh=self.mesh, memory=self.memory,
                                random_on_device=self.random_on_device, loras=self.loras)


def load_vae(config: VAEConfig, folder: str | Path | None = None, *, seed: int = 0, mesh: Mesh | None = None) -> CausalVideoVAE:
    shardings = shardings_for(abstract_vae(config), mesh)
    if folder is not None:
        return restore_vae(folder, config, shardings)
    return random_model(abstract_vae(config), lambda flat: export_torch_vae(flat, config),
                        lambda s, d: read_torch_vae(s, config, d), config.param_dtype, seed, shardings)


def random_model(abstract: nnx.Module, export: Callable, read: Callable, param_dtype: str, seed: int,
                 shardings: Mapping | None = None) -> nnx.Module:
    """A model with random_weights.random_params, placed by `shardings` (default: one device)."""
    return placed(abstract, random_params(abstract, export, read, param_dtype, seed), shardings or shardings_for(abstract, None))


def random_transformer(config: TransformerConfig, seed: int = 0) -> HunyuanVideoTransformer:
    return load_transformer(config, seed=seed)


def random_vae(config: VAEConfig, seed: int = 0) -> CausalVideoVAE:
    return load_vae(config, seed=seed)


# -- text and audio encoders --

def _same_architecture(directory: Path, spec: TextCheckpoint, config) -> None:
    """The converted folder must hold the model the config describes (dtypes may differ)."""
    stored = spec.config_from_mapping(checked_info(directory, spec.kind)["config"])
    differ = [f.name for f in dataclasses.fields(config)
              if f.name not in ("dtype", "param_dtype") and getattr(stored, f.name) != getattr(config, f.name)]
    if differ:
        raise ValueError(f"{directory} was converted for another {spec.what}: " + ", ".join(
            f"{k} {getattr(stored, k)!r} (config: {getattr(config, k)!r})" for k in differ)
            + "; convert again with this config, or set these text_encoder config values")


def lazy_text_encoder(name: str, spec: TextCheckpoint, model_config, directory, text_config, max_length: int,
                      mesh: Mesh | None, random_weights: Callable[[Mapping], nnx.Module], output: Callable,
                      convert_flags: str = "") -> tuple[LazyEncoder, TextTokenizer]:
    """One text encoder of a pipeline and its tokenizer: from its converted folder (Orbax params +
    hyv_jax.json + tokenizer.json), or `random_weights(shardings)` with the tokenizer the config
    ships (`shipped_tokenizers`). `output` maps the model's output to what encode returns."""
    shardings = shardings_for(abstract_model(spec, model_config), mesh)
    if directory is not None:
        directory = Path(directory)
        _same_architecture(directory, spec, model_config)
        load = lambda: restore_text(directory, spec, model_config, shardings)  # noqa: E731
        folder = directory
    elif text_config.shipped_tokenizers:
        load = lambda: random_weights(shardings)  # noqa: E731
        folder = ASSETS / text_config.shipped_tokenizers / name
    else:
        raise ValueError(
            f"no {name}_dir given, and this config ships no tokenizers for random weights: convert the {spec.what} "
            f"with `python convert_torch_weights.py to-jax --model {name} {convert_flags}--checkpoint <HF folder> --out <dir>` "
            f"and pass {name}_dir=<dir>")
    tokenizer = TextTokenizer.from_folder(folder, max_length, on_truncation=text_config.on_truncation, name=f"{name} tokenizer")
    return LazyEncoder(load, output), tokenizer


def _hidden_states(states):
    return states


def _pooled(out):
    return out[1]


# name -> (checkpoint spec, config class, offset of its random weights' seed, output of encode);
# the outputs are named functions so the encoders' programs can be kept across processes
TEXT_PARTS = {
    "llm": (LLM, LlamaConfig, 0, _hidden_states),
    "clip": (CLIP, CLIPTextConfig, 1, _pooled),
}


def seeded_text_model(config, name: str, seed: int) -> nnx.Module:
    """The random text encoder `name` ("llm", "clip") of the text_encoder config section that
    load_text_encoder(config, seed=seed) uses when given no folder (unplaced)."""
    spec, config_class, offset, _ = TEXT_PARTS[name]
    return spec.model(config_class.from_mapping(config[name]), rngs=nnx.Rngs(seed + offset))


def load_text_encoder(config, *, llm_dir=None, clip_dir=None, seed: int = 0, mesh: Mesh | None = None) -> TextEncoder:
    """config: the `text_encoder` section of a model config (configs/*.py). llm_dir / clip_dir:
    folders written by `convert_torch_weights.py to-jax --model llm|clip` (Orbax params +
    hyv_jax.json + the tokenizer files of the HF folder). None: random weights (from `seed`) and
    the small tokenizers shipped in the repository, for configs that name them
    (`shipped_tokenizers`, configs/tiny.py). mesh: shard the parameters by their logical axes
    (for devices too small for the 8B LLM). Tokenizers are read here; the weights on the first
    `encode`, and again after `release`."""
    if "llm" not in config or "clip" not in config:
        raise ValueError("pass the text_encoder section of the config (config.text_encoder), with llm and clip")
    directories = {"llm": llm_dir, "clip": clip_dir}
    max_lengths = {"llm": config.llm_max_length, "clip": config.clip_max_length}
    (llm, llm_tokenizer), (clip, clip_tokenizer) = (
        lazy_text_encoder(name, spec, config_class.from_mapping(config[name]), directories[name], config, max_lengths[name], mesh,
                          lambda p, n=name: _seeded(seeded_text_model(config, n, seed), p), output)
        for name, (spec, config_class, _, output) in TEXT_PARTS.items()
    )
    return TextEncoder(llm, clip, llm_tokenizer, clip_tokenizer)


def _seeded(model: nnx.Module, shardings: Mapping) -> nnx.Module:
    """A freshly initialised (tiny, random) model moved onto its shardings."""
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        var.set_value(jax.device_put(var.get_value(), shardings[tuple(str(p) for p in path)]))
    return model


def load_custom_text_encoder(config, *, llm_dir=None, clip_dir=None, llava_dir=None, seed: int = 0,
                             mesh: Mesh | None = None) -> CustomTextEncoder:
    """config: a HunyuanCustom model config (configs/hunyuan_custom.py, tiny_custom.py), with
    `text_encoder` and `vision`. llm_dir / clip_dir: as for `load_text_encoder`; llava_dir: the
    HF folder of HunyuanCustom's llava-llama-3-8b, read for the vision tower and projector.
    Without llava_dir the image encoder gets random weights (from `seed`), which only configs
    with `shipped_tokenizers` (tiny ones) allow."""
    if "vision" not in config or "text_encoder" not in config:
        raise ValueError("pass a HunyuanCustom model config (with text_encoder and vision sections)")
    base = load_text_encoder(config.text_encoder, llm_dir=llm_dir, clip_dir=clip_dir, seed=seed, mesh=mesh)
    vision = ClipVisionConfig.from_mapping(config.vision)
    abstract = abstract_instance(LlavaImageEncoder, vision)
    shardings = shardings_for(abstract, mesh)
    if llava_dir is not None:
        load = lambda: placed(abstract, read_torch_llava_vision(open_checkpoint(llava_dir), vision, np.dtype(vision.param_dtype)),  # noqa: E731
                              shardings)
    elif config.text_encoder.shipped_tokenizers:
        load = lambda: _seeded(LlavaImageEncoder(vision, rngs=nnx.Rngs(seed + 2)), shardings)  # noqa: E731
    else:
        raise ValueError("no llava_dir given: pass the HF folder of HunyuanCustom's llava-llama-3-8b for the vision tower")
    return CustomTextEncoder(base, load, vision, llava_pad_token_id(llava_dir) if llava_dir is not None else None)


def llava_pad_token_id(llava_dir) -> int | None:
    """The `pad_token_id` of a LLaVA HF folder's config.json, whose token embeddings LLaVA zeroes;
    -1 when the config has none (transformers 4.41.2 modeling_llava.py:246: nothing zeroed); None
    when there is no config to read (a checkpoint file)."""
    config = Path(llava_dir) / "config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text()).get("pad_token_id")
    return -1 if value is None else int(value)


def load_whisper(config: WhisperEncoderConfig, folder: str | Path | None = None, *, seed: int = 0) -> WhisperEncoder:
    """whisper-tiny's encoder from a transformers checkpoint file or folder, or random weights."""
    abstract = abstract_instance(WhisperEncoder, config)
    if folder is None:
        return _seeded(WhisperEncoder(config, rngs=nnx.Rngs(seed)), shardings_for(abstract, None))
    return placed(abstract, read_torch_whisper_encoder(open_checkpoint(folder), config, np.dtype(config.param_dtype)),
                  shardings_for(abstract, None))
