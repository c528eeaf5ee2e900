"""Models ready to run: from converted folders, random tiny weights or the shipped assets, each
parameter placed straight into its sharding. The only package that joins hyv_jax.models and
hyv_jax.convert: models know nothing of checkpoints, converters nothing of devices."""
