"""Prompts -> what the transformer is conditioned on: the LLM's hidden states after the prompt
template (template tokens cropped) with their mask, and CLIP's pooled output.

Encoding runs on device and returns host (numpy) arrays; `release()` frees the device memory
of both encoders so the 8B LLM is not resident while the DiT samples.
"""

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from hyv_jax.models.text.templates import TEMPLATES, template
from hyv_jax.models.text.tokenizer import TextTokenizer
from hyv_jax.persistent_cache import PersistentProgram

ASSETS = Path(__file__).parents[2] / "assets"


@dataclasses.dataclass(frozen=True)
class PromptEmbeddings:
    states: np.ndarray  # (B, L, D) float32: LLM hidden states after the crop (L = max length - crop)
    mask: np.ndarray  # (B, L) int32, 1 = valid token (right padding)
    pooled: np.ndarray  # (B, D2) float32: CLIP pooled output

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> "PromptEmbeddings":
        """Every field through fn (a row slice, a repeat over the batch, ...)."""
        return dataclasses.replace(self, **{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})


def _encode(graphdef: nnx.GraphDef, output: Callable, state: nnx.State, *inputs: jax.Array):
    return output(nnx.merge(graphdef, state)(*inputs))


# jitted over the split state; kept across processes where `output` is a module-level function
ENCODE = PersistentProgram(_encode, "text_encoder", static_argnums=(0, 1))


class LazyEncoder:
    """One model, loaded on first use and again after `release`; jitted over (graphdef, state)
    (a reload has the same graph: the compiled program serves it)."""

    def __init__(self, load: Callable[[], nnx.Module], output: Callable):
        self._load, self._output = load, output
        self._graphdef = self._state = None

    def __call__(self, *inputs: np.ndarray) -> np.ndarray:
        if self._state is None:
            self._graphdef, self._state = nnx.split(self._load())
        return np.asarray(jax.device_get(ENCODE(self._graphdef, self._output, self._state, *inputs)), np.float32)

    def release(self) -> None:
        if self._state is not None:
            for array in jax.tree.leaves(self._state):
                array.delete()
        self._state = None

    @property
    def loaded(self) -> bool:
        return self._state is not None


class TextEncoder:
    def __init__(self, llm: LazyEncoder, clip: LazyEncoder, llm_tokenizer: TextTokenizer, clip_tokenizer: TextTokenizer):
        self._llm, self._clip = llm, clip
        self.llm_tokenizer, self.clip_tokenizer = llm_tokenizer, clip_tokenizer
        self.crops = {mode: template(mode).crop(llm_tokenizer.token_ids) for mode in TEMPLATES}
        too_long = {m: c for m, c in self.crops.items() if c >= llm_tokenizer.max_length}
        if too_long:
            raise ValueError(f"the templates take {too_long} tokens, the LLM max length is {llm_tokenizer.max_length}")

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
