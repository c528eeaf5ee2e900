"""PyTorch checkpoints <-> hyv_jax parameters, and Orbax I/O."""
