"""Prompts -> what the transformer is conditioned on: the LLM's hidden states after the prompt
template (template tokens cropped) with their mask, and CLIP's pooled output.

Encoding runs on device and returns host (numpy) arrays; `release()` frees the device memory
of both encoders so the 8B LLM is not resident while the DiT samples.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from hyv_jax.convert.converted_model import checked_info
from hyv_jax.convert.text_checkpoint import CLIP, LLM, TextCheckpoint, abstract_model, restore_text
from hyv_jax.models.text.clip_text import CLIPTextConfig
from hyv_jax.models.text.llama import LlamaConfig
from hyv_jax.models.text.templates import TEMPLATES, template
from hyv_jax.models.text.tokenizer import TextTokenizer
from hyv_jax.parallel.logical_axes import param_shardings

ASSETS = Path(__file__).parents[2] / "assets"


@dataclasses.dataclass(frozen=True)
class PromptEmbeddings:
    states: np.ndarray  # (B, L, D) float32: LLM hidden states after the crop (L = max length - crop)
    mask: np.ndarray  # (B, L) int32, 1 = valid token (right padding)
    pooled: np.ndarray  # (B, D2) float32: CLIP pooled output

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "PromptEmbeddings":
        """Every field through fn (a row slice, a repeat over the batch, ...)."""
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})


class LazyEncoder:
    """One model, loaded on first use and again after `release`; jitted over (graphdef, state)."""

    def __init__(self, load: Callable[[], nnx.Module], output: Callable):
        self._load, self._output = load, output
        self._state = self._fn = None

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        if self._state is None:
            graphdef, self._state = nnx.split(self._load())
            if self._fn is None:  # a reload has the same structure: keep the compiled function
                self._fn = jax.jit(lambda state, *a: self._output(nnx.merge(graphdef, state)(*a)))
        return np.asarray(jax.device_get(self._fn(self._state, *inputs)), np.float32)

    def release(self) -> None:
        if self._state is not None:
            for array in jax.tree.leaves(self._state):
                array.delete()
        self._state = None

    @property
    def loaded(self) -> bool:
        return self._state is not None


def _same_architecture(directory: Path, spec: TextCheckpoint, config) -> None:
    """The converted folder must hold the model the config describes (dtypes may differ)."""
    stored = spec.config_from_mapping(checked_info(directory, spec.kind)["config"])
    differ = [f.name for f in dataclasses.fields(config)
              if f.name not in ("dtype", "param_dtype") and getattr(stored, f.name) != getattr(config, f.name)]
    if differ:
        raise ValueError(f"{directory} was converted for another {spec.what}: " + ", ".join(
            f"{k} {getattr(stored, k)!r} (config: {getattr(config, k)!r})" for k in differ)
            + "; convert again with this config, or set these text_encoder config values")


def _placed(model: nnx.Module, shardings: Mapping | None) -> nnx.Module:
    """Moves each parameter onto its sharding (parameter path -> sharding), if any."""
    if shardings is not None:
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            var.set_value(jax.device_put(var.get_value(), shardings[tuple(str(p) for p in path)]))
    return model


class TextEncoder:
    def __init__(self, llm: LazyEncoder, clip: LazyEncoder, llm_tokenizer: TextTokenizer, clip_tokenizer: TextTokenizer):
        self._llm, self._clip = llm, clip
        self.llm_tokenizer, self.clip_tokenizer = llm_tokenizer, clip_tokenizer
        self.crops = {mode: template(mode).crop(llm_tokenizer.token_ids) for mode in TEMPLATES}
        too_long = {m: c for m, c in self.crops.items() if c >= llm_tokenizer.max_length}
        if too_long:
            raise ValueError(f"the templates take {too_long} tokens, the LLM max length is {llm_tokenizer.max_length}")

    @classmethod
    def load(cls, config, *, llm_dir=None, clip_dir=None, seed: int = 0, mesh: Mesh | None = None) -> "TextEncoder":
        """config: the `text_encoder` ConfigDict section of a model config (configs/*.py).
        llm_dir / clip_dir: folders written by `convert_torch_weights.py to-jax --model llm|clip`
        (Orbax params + hyv_jax.json + the tokenizer files of the HF folder). None: random
        weights (from `seed`) and the small tokenizers shipped in the repository, for configs
        that name them (`shipped_tokenizers`, configs/tiny.py). mesh: shard the parameters by
        their logical axes (hyv_jax.parallel rules) instead of placing them on one device, for
        accelerators too small for the 8B LLM. Tokenizers are read here; the weights on the
        first `encode`."""
        if "llm" not in config or "clip" not in config:
            raise ValueError("pass the text_encoder section of the config (config.text_encoder), with llm and clip")
        llm_config, clip_config = LlamaConfig.from_mapping(config.llm), CLIPTextConfig.from_mapping(config.clip)
        parts = []
        for name, spec, model_config, directory, max_length, offset in (
            ("llm", LLM, llm_config, llm_dir, config.llm_max_length, 0),
            ("clip", CLIP, clip_config, clip_dir, config.clip_max_length, 1),
        ):
            shardings = param_shardings(abstract_model(spec, model_config), mesh) if mesh is not None else None
            if directory is not None:
                directory = Path(directory)
                _same_architecture(directory, spec, model_config)
                load = lambda d=directory, s=spec, c=model_config, p=shardings: restore_text(d, s, c, p)  # noqa: E731
                folder = directory
            elif config.shipped_tokenizers:
                load = lambda s=spec, c=model_config, r=seed + offset, p=shardings: _placed(s.model(c, rngs=nnx.Rngs(r)), p)  # noqa: E731
                folder = ASSETS / config.shipped_tokenizers / name
            else:
                raise ValueError(
                    f"no {name}_dir given, and this config ships no tokenizers for random weights: convert the {spec.what} "
                    f"with `python convert_torch_weights.py to-jax --model {name} --checkpoint <HF folder> --out <dir>` "
                    f"and pass {name}_dir=<dir>")
            tokenizer = TextTokenizer.from_folder(folder, max_length, on_truncation=config.on_truncation, name=f"{name} tokenizer")
            parts.append((load, tokenizer))
        (llm_load, llm_tokenizer), (clip_load, clip_tokenizer) = parts
        return cls(LazyEncoder(llm_load, lambda states: states), LazyEncoder(clip_load, lambda out: out[1]), llm_tokenizer, clip_tokenizer)

    def encode(self, prompts: Sequence[str], *, mode: str = "video") -> PromptEmbeddings:
        """mode "video" or "image" picks the prompt template (and its crop). Weights released by
        `release()` are loaded again first."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        chosen, crop = template(mode), self.crops.get(mode)
        ids, mask = self.llm_tokenizer([chosen.apply(p) for p in prompts])
        states = self._llm(ids, mask)
        return PromptEmbeddings(states[:, crop:], mask[:, crop:], self.pooled(prompts))

    def pooled(self, prompts: Sequence[str]) -> np.ndarray:
        """CLIP's pooled output (B, D2) of the plain prompts."""
        return self._clip(*self.clip_tokenizer(list(prompts)))

    def llm_model(self) -> nnx.Module:
        """A new LLM holding the weights `encode` uses (for encoders built around it)."""
        return self._llm._load()

    def release(self) -> None:
        """Frees the device buffers of both encoders' parameters; a later `encode` reloads them
        (from the converted folders, or the same seed)."""
        self._llm.release()
        self._clip.release()

    @property
    def loaded(self) -> bool:
        return self._llm.loaded or self._clip.loaded
