"""Caption dropout: a fraction of each training batch sees the negative prompt instead of its
caption, so the model learns the velocity that true classifier-free guidance (sampling with
cfg_scale > 1) puts in its unconditional branch and extrapolates away from.

That branch is the default negative prompt whenever none is given: the sampler, like upstream
(hyvideo/inference.py:595-606), replaces an empty negative prompt by it, so a model dropped to
"" would be guided by a prompt it never saw (measured on the tiny default: 2 of 8 held-out
colours right at scale 1.5). Its encodings come from the text encoders that encoded the
captions: `train.py prepare` stores them beside the shards (FILE), one set per prompt
template, since an image (one frame) and a video caption are encoded with different templates.
"""

from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hyv_jax.io.atomic_file import write_replacing
from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT
from hyv_jax.training.latent_records import FIELDS

FILE = "negative_prompt.npz"
TEXT_FIELDS = tuple(f for f in FIELDS if f.startswith("text_"))  # what a record holds of its caption
MODES = ("video", "image")


def save_negative_prompt(text_encoder, data_dir: str | Path) -> Path:
    """Encodes the default negative prompt (stripped, as the sampler does) with each template and
    writes the arrays to data_dir/FILE (atomically)."""
    arrays = {}
    for mode in MODES:
        text = text_encoder.encode([DEFAULT_NEGATIVE_PROMPT.strip()], mode=mode)
        for field, value in zip(TEXT_FIELDS, (text.states, text.mask, text.pooled)):
            arrays[f"{mode}/{field}"] = np.asarray(value[0])

    def write(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    return write_replacing(Path(data_dir) / FILE, write)


def load_negative_prompt(data_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """{mode: {text field: array}} from data_dir/FILE."""
    path = Path(data_dir) / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: training.caption_dropout > 0 needs the negative prompt's encodings, "
                                f"which `train.py prepare` writes beside the shards; prepare the data again with this "
                                f"version (same text encoders), or set --config.training.caption_dropout=0")
    with np.load(path) as stored:
        return {mode: {field: stored[f"{mode}/{field}"] for field in TEXT_FIELDS} for mode in MODES}


def drop_captions(batch: Mapping[str, jax.Array], negative: Mapping[str, jax.Array], key: jax.Array,
                  rate: float) -> dict[str, jax.Array]:
    """`batch` with each sample's text fields replaced by `negative`'s (one template's encodings
    of the negative prompt) with probability `rate`, drawn per sample from `key`."""
    rows = batch["latents"].shape[0]
    dropped = jax.random.bernoulli(key, rate, (rows,))
    out = dict(batch)
    for field in TEXT_FIELDS:
        value = batch[field]
        where = dropped.reshape((rows,) + (1,) * (value.ndim - 1))
        out[field] = jnp.where(where, jnp.asarray(negative[field], value.dtype)[None], value)
    return out
