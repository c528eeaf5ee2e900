"""hyv_jax: HunyuanVideo and HunyuanCustom in JAX/Flax NNX."""

__version__ = "0.1.0"
