"""The embedded default: configs/tiny.py's VAE and transformer trained on the procedural scenes
(bench/train_tiny_default.py), shipped as converted folders under hyv_jax/assets/tiny_default
with its text encoders.

The text encoders are random, seeded (TEXT_ENCODER_SEED): the transformer learned from the
embeddings that seed's encoders give, and data preparation for a new run must use the same
seed. They are shipped as converted folders too (350 KB): restoring them costs less than
initialising them op by op at every start (45 small programs), and the shipped default no
longer depends on the random initialisers staying bit-identical (tests/test_tiny_default.py
checks they still match the seed's).
"""

from pathlib import Path

from hyv_jax.convert.orbax_io import INFO_FILE, read_info
from hyv_jax.loading.paths import ModelPaths

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "tiny_default"
# the pipelines seed their random text encoders with seed + 2 (from_config(seed=0))
TEXT_ENCODER_SEED = 2


def shipped_paths(asset_dir: Path = ASSET_DIR) -> ModelPaths | None:
    """ModelPaths of the shipped trained transformer and VAE and their text encoders, or None
    when the repository holds no trained default (all four folders)."""
    folders = {name: asset_dir / name for name in ModelPaths.__dataclass_fields__}
    if not all(folder.is_dir() for folder in folders.values()):
        return None
    return ModelPaths(**folders)


def shipped_scaling_factor(asset_dir: Path = ASSET_DIR) -> float | None:
    """The latent scaling factor train-vae measured for the shipped VAE (None: none shipped)."""
    vae = asset_dir / "vae"
    return read_info(vae)["config"]["scaling_factor"] if (vae / INFO_FILE).is_file() else None


def save_text_encoders(text_config, asset_dir: Path = ASSET_DIR, seed: int = TEXT_ENCODER_SEED) -> None:
    """Writes the random text encoders of `seed` (those load_text_encoder builds without folders)
    with their shipped tokenizers as converted folders asset_dir/llm and asset_dir/clip."""
    from hyv_jax.convert.converted_model import save_converted
    from hyv_jax.convert.model_state import params_to_numpy
    from hyv_jax.convert.text_checkpoint import TOKENIZER_EXTRAS, TOKENIZER_FILE
    from hyv_jax.loading.models import TEXT_PARTS, seeded_text_model
    from hyv_jax.models.text.text_encoder import ASSETS

    for name, (spec, config_class, _, _) in TEXT_PARTS.items():
        config = config_class.from_mapping(text_config[name])
        tokenizer = ASSETS / text_config.shipped_tokenizers / name
        save_converted(asset_dir / name, params_to_numpy(seeded_text_model(text_config, name, seed)), spec.kind, config,
                       f"random weights, seed {seed}", config.param_dtype, overwrite=True,
                       files=[tokenizer / f for f in (TOKENIZER_FILE, *TOKENIZER_EXTRAS) if (tokenizer / f).exists()])
