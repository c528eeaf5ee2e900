"""Where the converted weights of a pipeline's models are, checked before anything loads."""

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from hyv_jax.convert.custom_checkpoint import MODEL_KIND as CUSTOM_KIND
from hyv_jax.convert.hunyuan_dit_checkpoint import MODEL_KIND as DIT_KIND
from hyv_jax.convert.hunyuan_dit_text_checkpoint import BERT, MT5
from hyv_jax.convert.orbax_io import INFO_FILE, read_info
from hyv_jax.convert.sdxl_vae_checkpoint import MODEL_KIND as SDXL_VAE_KIND
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

    def check(self, allow_random_weights: bool) -> None:
        """Fails, saying what to do, on absent folders or tokenizers, or on missing checkpoints
        for a config that must not run with random weights. Reads no weights."""
        check_converted(self, self.converted(), ("llm", "clip"), allow_random_weights,
                        "(or use configs/tiny.py, which runs with random weights)")

    def converted(self) -> dict[str, tuple[str, str]]:
        """Per folder: (convert_torch_weights.py --model, the model kind it records)."""
        return {"transformer": ("transformer", TRANSFORMER_KIND), "vae": ("vae", VAE_KIND), "llm": ("llm", LLM.kind),
                "clip": ("clip", CLIP.kind)}


def check_converted(paths, models: Mapping[str, tuple[str, str]], tokenized: tuple[str, ...], allow_random_weights: bool,
                    hint: str, convert_flags: str = "") -> None:
    """The converted folders of `paths` that are given (field -> (the converter's --model for it,
    the model kind it records)) must hold a converted checkpoint of that kind (and those in
    `tokenized` their tokenizer.json); all must be given unless random weights are allowed.
    `convert_flags` go into the suggested command."""
    for name, (model, kind) in models.items():
        folder = getattr(paths, name)
        if folder is None:
            continue
        folder = Path(folder)
        if not (folder / INFO_FILE).is_file():
            raise FileNotFoundError(
                f"{name} checkpoint folder {folder} has no {INFO_FILE}: it is not a converted hyv_jax checkpoint; "
                f"run `python convert_torch_weights.py to-jax --model {model} {convert_flags}... --out {folder}`"
            )
        held = read_info(folder).get("model")
        if held != kind:
            what = f"holds a converted {held} checkpoint" if held else f"names no model in its {INFO_FILE}"
            raise ValueError(f"{name} folder {folder} {what}, not a {kind}: pass the folder converted for the {name} "
                             f"(--{name}-dir; convert_torch_weights.py to-jax --model {model})")
        if name in tokenized and not (folder / TOKENIZER_FILE).is_file():
            raise FileNotFoundError(
                f"{name} folder {folder} has no {TOKENIZER_FILE}; copy the tokenizer.json of the Hugging Face "
                f"model folder into it (convert_torch_weights.py --model {model} does this)"
            )
    missing = [name for name in models if getattr(paths, name) is None]
    if missing and not allow_random_weights:
        raise ValueError(
            f"this model config needs converted checkpoints, missing: {', '.join(missing)}; convert them with "
            f"`python convert_torch_weights.py to-jax --model <{'|'.join(m for m, _ in models.values())}> {convert_flags}...` and pass the folders {hint}"
        )


@dataclasses.dataclass(frozen=True)
class CustomPaths(ModelPaths):
    """ModelPaths plus the two Hugging Face folders read directly: HunyuanCustom's LLaVA (vision
    tower + projector) and whisper-tiny (audio mode)."""

    llava: str | Path | None = None
    whisper: str | Path | None = None

    def converted(self) -> dict[str, tuple[str, str]]:
        return {**super().converted(), "transformer": ("custom", CUSTOM_KIND)}

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


@dataclasses.dataclass(frozen=True)
class DiTPaths:
    """Hunyuan-DiT's converted folders (convert_torch_weights.py --model hunyuan_dit|bert|mt5|
    sdxl_vae); None -> random weights (tiny config only)."""

    transformer: str | Path | None = None
    vae: str | Path | None = None
    bert: str | Path | None = None
    mt5: str | Path | None = None

    @classmethod
    def under(cls, root: str | Path) -> "DiTPaths":
        """root/transformer, root/vae, root/bert, root/mt5."""
        return cls(**{f.name: Path(root) / f.name for f in dataclasses.fields(cls)})

    def missing(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]

    def check(self, allow_random_weights: bool) -> None:
        check_converted(self, {"transformer": ("hunyuan_dit", DIT_KIND), "vae": ("sdxl_vae", SDXL_VAE_KIND), "bert": ("bert", BERT.kind),
                               "mt5": ("mt5", MT5.kind)}, ("bert", "mt5"),
                        allow_random_weights,
                        "(or use configs/tiny_hunyuan_dit.py, which runs with random weights)",
                        "--config configs/hunyuan_dit.py ")
