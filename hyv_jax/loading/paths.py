"""Where the converted weights of a pipeline's models are, checked before anything loads."""

import dataclasses
from pathlib import Path

from hyv_jax.convert.custom_checkpoint import MODEL_KIND as CUSTOM_KIND
from hyv_jax.convert.orbax_io import INFO_FILE, read_info
from hyv_jax.convert.text_checkpoint import CLIP, LLM
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND as TRANSFORMER_KIND
from hyv_jax.convert.vae_checkpoint import MODEL_KIND as VAE_KIND

TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass(frozen=True)
class ModelPaths:
    """Folders written by convert_torch_weights.py; None -> random weights (tiny config only)."""

    transformer: str | Path | None = None
    vae: str | Path | None = None
    llm: str | Path | None = None
    clip: str | Path | None = None

    def missing(self) -> list[str]:
        return [f.name for f in dataclasses.fields(ModelPaths) if getattr(self, f.name) is None]

    def kinds(self) -> dict[str, str]:
        """The model kind (convert_torch_weights.py --model) each folder must hold."""
        return {"transformer": TRANSFORMER_KIND, "vae": VAE_KIND, "llm": LLM.kind, "clip": CLIP.kind}

    def check(self, allow_random_weights: bool) -> None:
        """Fails, saying what to do, on absent folders or tokenizers, or on missing checkpoints
        for a config that must not run with random weights. Reads no weights."""
        for name in ("transformer", "vae", "llm", "clip"):
            folder = getattr(self, name)
            if folder is None:
                continue
            folder = Path(folder)
            if not (folder / INFO_FILE).is_file():
                raise FileNotFoundError(
                    f"{name} checkpoint folder {folder} has no {INFO_FILE}: it is not a converted hyv_jax checkpoint; "
                    f"run `python convert_torch_weights.py to-jax --model {name} ... --out {folder}`"
                )
            held, wanted = read_info(folder).get("model"), self.kinds()[name]
            if held != wanted:
                what = f"holds a converted {held} checkpoint" if held else f"names no model in its {INFO_FILE}"
                raise ValueError(f"{name} folder {folder} {what}, not a {wanted}: pass the folder converted for the {name} "
                                 f"(--{name}-dir; convert_torch_weights.py to-jax --model {name})")
            if name in ("llm", "clip") and not (folder / TOKENIZER_FILE).is_file():
                raise FileNotFoundError(
                    f"{name} folder {folder} has no {TOKENIZER_FILE}; copy the tokenizer.json of the Hugging Face "
                    f"model folder into it (convert_torch_weights.py --model {name} does this)"
                )
        if self.missing() and not allow_random_weights:
            raise ValueError(
                f"this model config needs converted checkpoints, missing: {', '.join(self.missing())}; convert them with "
                "`python convert_torch_weights.py to-jax --model <transformer|vae|llm|clip> ...` and pass the folders "
                "(or use configs/tiny.py, which runs with random weights)"
            )


@dataclasses.dataclass(frozen=True)
class CustomPaths(ModelPaths):
    """ModelPaths plus the two Hugging Face folders read directly: HunyuanCustom's LLaVA (vision
    tower + projector) and whisper-tiny (audio mode)."""

    llava: str | Path | None = None
    whisper: str | Path | None = None

    def kinds(self) -> dict[str, str]:
        return {**super().kinds(), "transformer": CUSTOM_KIND}

    def check(self, allow_random_weights: bool, *, audio: bool = False) -> None:
        super().check(allow_random_weights)
        for name in ("llava", "whisper"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).exists():
                raise FileNotFoundError(f"{name} folder {folder} does not exist; pass the Hugging Face folder of the model")
        needed = ["llava"] + (["whisper"] if audio else [])
        missing = [n for n in needed if getattr(self, n) is None]
        if missing and not allow_random_weights:
            raise ValueError(f"this model config needs the Hugging Face folders of {', '.join(missing)} "
                             f"(--{missing[0]}-dir); random weights only run with the tiny config")
