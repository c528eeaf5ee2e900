"""Prompts -> what the Hunyuan-DiT transformer is conditioned on: the bilingual CLIP (BERT)
last hidden states and the mT5 encoder's, each with its right-padded mask (padded to 77 and
256 tokens, truncated beyond, as hydit/diffusion/pipeline.py:encode_prompt). Encoding runs on
device and returns host (numpy) arrays; `release()` frees both encoders' device memory."""

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from hyv_jax.convert.hunyuan_dit_text_checkpoint import SPECS
from hyv_jax.convert.text_checkpoint import abstract_model, restore_text
from hyv_jax.models.text.text_encoder import ASSETS, LazyEncoder, _same_architecture
from hyv_jax.models.text.tokenizer import TextTokenizer
from hyv_jax.parallel.logical_axes import param_shardings
from hyv_jax.parallel.sharded_init import init_model


@dataclasses.dataclass(frozen=True)
class DiTPromptEmbeddings:
    states: np.ndarray  # (B, 77, 1024) float32: BERT last hidden states
    mask: np.ndarray  # (B, 77) int32, 1 = token (right padding)
    states_t5: np.ndarray  # (B, 256, 2048) float32: mT5 encoder last hidden states
    mask_t5: np.ndarray  # (B, 256) int32

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "DiTPromptEmbeddings":
        """Every field through fn (a row slice, a repeat over the batch, ...)."""
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})

    @staticmethod
    def concatenate(parts: Sequence["DiTPromptEmbeddings"]) -> "DiTPromptEmbeddings":
        return DiTPromptEmbeddings(*(np.concatenate([getattr(p, f.name) for p in parts])
                                     for f in dataclasses.fields(DiTPromptEmbeddings)))


class HunyuanDiTTextEncoder:
    def __init__(self, bert: LazyEncoder, mt5: LazyEncoder, bert_tokenizer: TextTokenizer, mt5_tokenizer: TextTokenizer):
        self._bert, self._mt5 = bert, mt5
        self.bert_tokenizer, self.mt5_tokenizer = bert_tokenizer, mt5_tokenizer

    @classmethod
    def load(cls, config, *, bert_dir=None, mt5_dir=None, seed: int = 0, mesh: Mesh | None = None) -> "HunyuanDiTTextEncoder":
        """config: the `text_encoder` section of a Hunyuan-DiT config (configs/hunyuan_dit.py).
        bert_dir / mt5_dir: folders written by `convert_torch_weights.py to-jax --model bert|mt5`
        (Orbax params + hyv_jax.json + tokenizer.json). None: random weights (from `seed`) with
        the tokenizers the config ships (`shipped_tokenizers`, configs/tiny_hunyuan_dit.py).
        mesh: shard the parameters by their logical axes. Weights load on the first `encode`."""
        if "bert" not in config or "mt5" not in config:
            raise ValueError("pass the text_encoder section of a Hunyuan-DiT config (config.text_encoder), with bert and mt5")
        parts = []
        for offset, (name, directory, max_length) in enumerate((("bert", bert_dir, config.bert_max_length),
                                                               ("mt5", mt5_dir, config.mt5_max_length))):
            spec = SPECS[name]
            model_config = spec.config_from_mapping(config[name])
            shardings = param_shardings(abstract_model(spec, model_config), mesh) if mesh is not None else None
            if directory is not None:
                directory = Path(directory)
                _same_architecture(directory, spec, model_config)
                load = lambda d=directory, s=spec, c=model_config, p=shardings: restore_text(d, s, c, p)  # noqa: E731
                folder = directory
            elif config.shipped_tokenizers:
                load = lambda s=spec, c=model_config, r=seed + offset: init_model(lambda: s.model(c, rngs=nnx.Rngs(r)), mesh)  # noqa: E731
                folder = ASSETS / config.shipped_tokenizers / name
            else:
                raise ValueError(
                    f"no {name}_dir given, and this config ships no tokenizers for random weights: convert the {spec.what} "
                    f"with `python convert_torch_weights.py to-jax --model {name} --config configs/hunyuan_dit.py "
                    f"--checkpoint <its folder's weights file> --out <dir>` and pass {name}_dir=<dir>")
            tokenizer = TextTokenizer.from_folder(folder, max_length, on_truncation=config.on_truncation, name=f"{name} tokenizer")
            parts.append((LazyEncoder(load, lambda states: states), tokenizer))
        (bert, bert_tokenizer), (mt5, mt5_tokenizer) = parts
        return cls(bert, mt5, bert_tokenizer, mt5_tokenizer)

    def encode(self, prompts: Sequence[str]) -> DiTPromptEmbeddings:
        """Weights released by `release()` are loaded again first."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, mask = self.bert_tokenizer(prompts)
        ids_t5, mask_t5 = self.mt5_tokenizer(prompts)
        return DiTPromptEmbeddings(self._bert(ids, mask), mask, self._mt5(ids_t5, mask_t5), mask_t5)

    def release(self) -> None:
        self._bert.release()
        self._mt5.release()
