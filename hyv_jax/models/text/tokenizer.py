"""A Hugging Face `tokenizer.json` with the official encoder settings: special tokens added,
right padding to a fixed length, truncation at that length, reported rather than silent."""

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tokenizers

TOKENIZER_FILE = "tokenizer.json"
TRUNCATION_POLICIES = ("warn", "error", "ignore")


class PromptTooLong(ValueError):
    pass


def _named_pad_token(folder: Path) -> str | None:
    """transformers keeps the pad token in tokenizer_config.json or special_tokens_map.json."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = folder / name
        if path.exists():
            token = json.loads(path.read_text()).get("pad_token")
            token = token.get("content") if isinstance(token, dict) else token
            if token:
                return token
    return None


class TextTokenizer:
    def __init__(self, tokenizer: tokenizers.Tokenizer, max_length: int, pad_token: str, *, on_truncation: str = "warn",
                 name: str = "tokenizer"):
        if on_truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"on_truncation must be one of {TRUNCATION_POLICIES}, got {on_truncation!r}")
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{name}: the pad token {pad_token!r} is not in the vocabulary")
        self.max_length, self.name, self.on_truncation, self.pad_id = max_length, name, on_truncation, pad_id
        self._plain = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._plain.no_padding()
        self._plain.no_truncation()
        self._fixed = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._fixed.enable_truncation(max_length)
        self._fixed.enable_padding(direction="right", pad_id=pad_id, pad_token=pad_token, length=max_length)

    @classmethod
    def from_folder(cls, folder: str | Path, max_length: int, *, on_truncation: str = "warn", name: str = "tokenizer") -> "TextTokenizer":
        """Reads `folder/tokenizer.json`; the pad token comes from its padding section or, as
        transformers does, from tokenizer_config.json / special_tokens_map.json beside it."""
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.exists():
            raise FileNotFoundError(f"{name}: no {TOKENIZER_FILE} in {folder}; convert the encoder from its Hugging Face "
                                    f"folder (convert_torch_weights.py to-jax copies the tokenizer) or copy the file there")
        tokenizer = tokenizers.Tokenizer.from_file(str(path))
        pad = (tokenizer.padding or {}).get("pad_token") or _named_pad_token(folder)
        if pad is None:
            raise ValueError(f"{name}: {folder} names no pad token; add \"pad_token\" to its tokenizer_config.json")
        return cls(tokenizer, max_length, pad, on_truncation=on_truncation, name=name)

    def token_ids(self, text: str) -> list[int]:
        """The encoding with special tokens, without padding or truncation."""
        return self._plain.encode(text).ids

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> ids (B, max_length) int32, mask (B, max_length) int32 (1 = token, right padding)."""
        if isinstance(texts, str) or not len(texts):
            raise ValueError(f"{self.name}: pass a non-empty list of strings, got {texts!r}")
        lengths = [len(e.ids) for e in self._plain.encode_batch(list(texts))]
        long = [(i, n) for i, n in enumerate(lengths) if n > self.max_length]
        if long:
            message = (f"{self.name}: {len(long)} prompt(s) exceed {self.max_length} tokens (index, tokens incl. template: "
                       f"{long[:5]}); the end is cut off as in the official pipeline. Shorten the prompt to keep all of it")
            if self.on_truncation == "error":
                raise PromptTooLong(message)
            if self.on_truncation == "warn":
                warnings.warn(message, stacklevel=2)
        encodings = self._fixed.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], np.int32)
        mask = np.array([e.attention_mask for e in encodings], np.int32)
        return ids, mask
