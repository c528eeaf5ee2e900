"""A persistent XLA compilation cache for sample.py and train.py: a second run with the same
shapes loads its compiled programs instead of compiling them again (the 13B denoising step,
each VAE tile shape and a training step take minutes to compile). Its folder also holds
hyv_jax/persistent_cache.py's entries (`hyv_jax/`): the main programs loaded untraced and the
models' abstract forms (the shipped tiny default: ~11 s the first time, ~2.4-3.3 s the next on
2 CPU cores)."""

import os
import warnings
from pathlib import Path

import jax

ENV = "HYV_JAX_COMPILE_CACHE"
DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hyv_jax" / "xla"


def default_cache_dir() -> str:
    """$HYV_JAX_COMPILE_CACHE if set (empty: no cache), else ~/.cache/hyv_jax/xla."""
    return os.environ.get(ENV, str(DEFAULT_DIR))


def enable_compilation_cache(directory: str) -> str | None:
    """Keeps every compiled program under `directory` ("": no cache) and returns the folder in
    use (None: no cache, with a warning when the folder cannot be created); a folder set
    through JAX's own JAX_COMPILATION_CACHE_DIR takes precedence."""
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    if not directory:
        return None
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. a read-only home on a pod host: run on, compiling as usual
        warnings.warn(f"no compilation cache: cannot create {directory} ({error.strerror}); set {ENV} to a writable folder")
        return None
    jax.config.update("jax_compilation_cache_dir", directory)
    # JAX skips programs compiled in under 1 s by default: most of the tiny model's are.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory
