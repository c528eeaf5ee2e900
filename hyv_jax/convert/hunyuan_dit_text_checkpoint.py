"""Hunyuan-DiT's text encoders from their Hugging Face folders -> our parameters -> Orbax, with
a `tokenizer.json` beside them.

bert: `t2i/clip_text_encoder` (official) or `text_encoder` (diffusers), a `BertModel` (its pooler
is left out, as upstream loads it without); the tokenizer is the folder's own or the sibling
`tokenizer` folder (vocab.txt). mt5: `t2i/mt5` (official; a full mT5, the decoder is left out)
or `text_encoder_2` (diffusers, tokenizer in `tokenizer_2`). Folders without a tokenizer.json
get one built by transformers from their vocab.txt / spiece.model (transformers must be
installed for that). A folder without safetensors is read from its one pytorch_model.bin.
"""

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import ml_dtypes

from hyv_jax.convert.checkpoint_source import open_checkpoint
from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.hunyuan_dit_text_table import bert_rules, mt5_rules
from hyv_jax.convert.text_checkpoint import TOKENIZER_EXTRAS, TOKENIZER_FILE, TextCheckpoint, check_hf_config, read_torch_text
from hyv_jax.models.hunyuan_dit.bert import BertConfig, BertModel
from hyv_jax.models.hunyuan_dit.mt5 import MT5Config, MT5Encoder

BERT = TextCheckpoint(
    kind="hunyuan_dit_bert", section="bert", what="Hunyuan-DiT bilingual CLIP text encoder (BERT)", model=BertModel,
    config_from_mapping=BertConfig.from_mapping, rules=bert_rules,
    prefixes=("bert.", ""), marker="embeddings.word_embeddings.weight",
    unused=("pooler.", "bert.pooler.", "cls."),
    unused_inside=lambda name, config: name == "embeddings.position_ids",
    model_type="bert",
    hf_fields=(("vocab_size", "vocab_size"), ("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
               ("num_hidden_layers", "num_layers"), ("num_attention_heads", "heads"),
               ("max_position_embeddings", "max_positions"), ("type_vocab_size", "type_vocab_size"),
               ("layer_norm_eps", "layer_norm_eps"), ("hidden_act", "hidden_act")),
)
MT5 = TextCheckpoint(
    kind="hunyuan_dit_mt5", section="mt5", what="mT5 encoder", model=MT5Encoder,
    config_from_mapping=MT5Config.from_mapping, rules=mt5_rules,
    prefixes=("",), marker="shared.weight",
    unused=("decoder.", "lm_head."),
    # T5EncoderModel ties encoder.embed_tokens to shared; files may hold both
    unused_inside=lambda name, config: name == "encoder.embed_tokens.weight",
    model_type="mt5",
    hf_fields=(("vocab_size", "vocab_size"), ("d_model", "d_model"), ("d_kv", "d_kv"), ("num_heads", "heads"),
               ("d_ff", "d_ff"), ("num_layers", "num_layers"),
               ("relative_attention_num_buckets", "relative_attention_num_buckets"),
               ("relative_attention_max_distance", "relative_attention_max_distance"),
               ("layer_norm_epsilon", "layer_norm_eps")),
)
SPECS = {"bert": BERT, "mt5": MT5}
# where each encoder's tokenizer sits relative to its weights folder (official, diffusers)
TOKENIZER_FOLDERS = {"bert": (".", "../tokenizer"), "mt5": (".", "../tokenizer_2")}
TOKENIZER_SOURCES = ("vocab.txt", "spiece.model")


def folder_weights(path: str | Path) -> Path:
    """A Hugging Face folder's weights: the folder itself when it holds safetensors, else its one
    PyTorch file (`pytorch_model.bin` as in the official t2i/ folders); a file stays as it is."""
    path = Path(path)
    if not path.is_dir() or any(path.glob("*.safetensors")):
        return path
    pickles = sorted(f for f in path.iterdir() if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if len(pickles) != 1:
        raise FileNotFoundError(f"{path} holds no .safetensors and {len(pickles)} PyTorch weight files "
                                f"({[f.name for f in pickles]}); pass the weights file as --checkpoint")
    return pickles[0]


def tokenizer_folder(weights: Path, section: str) -> Path:
    folder = weights if weights.is_dir() else weights.parent
    for relative in TOKENIZER_FOLDERS[section]:
        candidate = (folder / relative).resolve()
        if any((candidate / name).exists() for name in (TOKENIZER_FILE, *TOKENIZER_SOURCES)):
            return candidate
    raise FileNotFoundError(f"no tokenizer ({TOKENIZER_FILE} or {' / '.join(TOKENIZER_SOURCES)}) in "
                            f"{[str(folder / r) for r in TOKENIZER_FOLDERS[section]]}: convert from the Hunyuan-DiT folder layout "
                            "(t2i/clip_text_encoder + t2i/tokenizer, t2i/mt5; or diffusers' text_encoder + tokenizer, "
                            "text_encoder_2 + tokenizer_2)")


def write_tokenizer(source: Path, out_dir: Path) -> None:
    """tokenizer.json (copied, or built by transformers from vocab.txt / spiece.model) and the
    files naming the pad token."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (source / TOKENIZER_FILE).exists():
        shutil.copyfile(source / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    else:
        try:
            import transformers
        except ImportError as e:
            raise ImportError(f"{source} has no {TOKENIZER_FILE}; building one needs transformers: pip install transformers") from e
        if (source / "tokenizer_config.json").exists():
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
        else:  # a bare WordPiece vocabulary names no tokenizer class: BERT's
            tokenizer = transformers.BertTokenizer(str(source / "vocab.txt"))
        backend = tokenizer.backend_tokenizer
        backend.enable_padding(pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)  # names the pad token
        backend.save(str(out_dir / TOKENIZER_FILE))
    for name in TOKENIZER_EXTRAS:
        if (source / name).exists():
            shutil.copyfile(source / name, out_dir / name)


def _checked_spec(folder: Path, spec: TextCheckpoint) -> TextCheckpoint:
    """mT5 folders saved through T5EncoderModel (diffusers) call themselves "t5"."""
    path = folder / "config.json"
    if spec is MT5 and path.exists() and json.loads(path.read_text()).get("model_type") == "t5":
        return dataclasses.replace(spec, model_type="t5")
    return spec


def convert_hunyuan_dit_text(path: str | Path, section: str, config, out_dir: str | Path, *, dtype=ml_dtypes.bfloat16,
                             overwrite: bool = False) -> None:
    """Converts one encoder (`section` "bert" or "mt5") to Orbax with its tokenizer files (written
    with the parameters, into place together)."""
    path, spec = folder_weights(path), SPECS[section]
    source = open_checkpoint(path)
    folder = path if path.is_dir() else path.parent
    tokenizer = tokenizer_folder(path, section)
    check_hf_config(folder, _checked_spec(folder, spec), config)
    flat = read_torch_text(source, spec, config, dtype)
    with tempfile.TemporaryDirectory() as files:
        write_tokenizer(tokenizer, Path(files))
        save_converted(out_dir, flat, spec.kind, config, path, dtype, overwrite=overwrite, files=sorted(Path(files).iterdir()))
