"""Writes the tokenizers the tiny configs ship (each asset folder's build.py lists its own)."""

from collections.abc import Callable, Mapping
from pathlib import Path

from tokenizers import Tokenizer


def write_tokenizers(folder: Path, builds: Mapping[str, Callable[[], Tokenizer]]) -> None:
    """folder/NAME/tokenizer.json for every NAME: build in `builds`."""
    for name, build in builds.items():
        tok = build()
        (folder / name).mkdir(exist_ok=True)
        tok.save(str(folder / name / "tokenizer.json"))
        print(f"{name}: {tok.get_vocab_size()} tokens -> {folder / name / 'tokenizer.json'}")
