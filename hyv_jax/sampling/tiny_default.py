"""The embedded default: configs/tiny.py's VAE and transformer trained on the procedural scenes
(bench/train_tiny_default.py), shipped as converted folders under hyv_jax/assets/tiny_default.

The text encoders stay random (seeded): the transformer learned from the embeddings that
seed's encoders give, so data preparation and sampling must use the same seed.
"""

from pathlib import Path

from hyv_jax.sampling.pipeline import ModelPaths

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets" / "tiny_default"
# TextToVideoPipeline.from_config(seed=0) seeds its random text encoders with seed + 2
TEXT_ENCODER_SEED = 2


def shipped_paths(asset_dir: Path = ASSET_DIR) -> ModelPaths | None:
    """ModelPaths of the shipped trained transformer and VAE (text encoders random), or None
    when the repository holds no trained default."""
    transformer, vae = asset_dir / "transformer", asset_dir / "vae"
    if not (transformer.is_dir() and vae.is_dir()):
        return None
    return ModelPaths(transformer=transformer, vae=vae)
