"""The embedded default: configs/tiny.py's VAE and transformer trained on the procedural scenes
(bench/train_tiny_default.py), shipped as converted folders under hyv_jax/assets/tiny_default.

The text encoders stay random (seeded): the transformer learned from the embeddings that
seed's encoders give, so data preparation and sampling must use the same seed.
"""

from pathlib import Path

from hyv_jax.convert.orbax_io import INFO_FILE, read_info
from hyv_jax.loading.paths import ModelPaths

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "tiny_default"
# the pipelines seed their random text encoders with seed + 2 (from_config(seed=0))
TEXT_ENCODER_SEED = 2


def shipped_paths(asset_dir: Path = ASSET_DIR) -> ModelPaths | None:
    """ModelPaths of the shipped trained transformer and VAE (text encoders random), or None
    when the repository holds no trained default."""
    transformer, vae = asset_dir / "transformer", asset_dir / "vae"
    if not (transformer.is_dir() and vae.is_dir()):
        return None
    return ModelPaths(transformer=transformer, vae=vae)


def shipped_scaling_factor(asset_dir: Path = ASSET_DIR) -> float | None:
    """The latent scaling factor train-vae measured for the shipped VAE (None: none shipped)."""
    vae = asset_dir / "vae"
    return read_info(vae)["config"]["scaling_factor"] if (vae / INFO_FILE).is_file() else None
