"""Prompts -> what the Hunyuan-DiT transformer is conditioned on: the bilingual CLIP (BERT)
last hidden states and the mT5 encoder's, each with its right-padded mask (padded to 77 and
256 tokens, truncated beyond, as hydit/diffusion/pipeline.py:encode_prompt). Encoding runs on
device and returns host (numpy) arrays; `release()` frees both encoders' device memory.
hyv_jax.loading.hunyuan_dit.load_hunyuan_dit_text_encoder builds one from converted folders."""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from hyv_jax.models.text.text_encoder import LazyEncoder
from hyv_jax.models.text.tokenizer import TextTokenizer


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

    def encode(self, prompts: Sequence[str]) -> DiTPromptEmbeddings:
        """Weights released by `release()` are loaded again first."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, mask = self.bert_tokenizer(prompts)
        ids_t5, mask_t5 = self.mt5_tokenizer(prompts)
        return DiTPromptEmbeddings(self._bert(ids, mask), mask, self._mt5(ids_t5, mask_t5), mask_t5)

    def release(self) -> None:
        self._bert.release()
        self._mt5.release()
