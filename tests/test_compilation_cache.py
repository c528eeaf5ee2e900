"""sample.py's persistent compilation cache: the first run fills the folder (by default under
$XDG_CACHE_HOME; the main programs and abstract models in its hyv_jax/ subfolder), the second
loads its programs from there and writes the same video; an empty --compile-cache turns the
cache off."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from hyv_jax.compilation_cache import enable_compilation_cache
from hyv_jax.io.video import read_video

ROOT = Path(__file__).parents[1]


def run_sample(out: Path, xdg_cache: Path, *flags: str) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in ("HYV_JAX_COMPILE_CACHE", "JAX_COMPILATION_CACHE_DIR")}
    subprocess.run([sys.executable, "sample.py", "--save-path", str(out), "--video-size", "32", "32", "--video-length", "5",
                    "--infer-steps", "2", *flags], cwd=ROOT, env={**env, "XDG_CACHE_HOME": str(xdg_cache)},
                   check=True, capture_output=True)
    (video,) = out.glob("*.mp4")
    return video


def test_second_run_loads_the_cached_programs_and_writes_the_same_video(tmp_path):
    first = run_sample(tmp_path / "first", tmp_path / "xdg")
    cache = tmp_path / "xdg" / "hyv_jax" / "xla"
    entries = set(os.listdir(cache))
    kept = set(os.listdir(cache / "hyv_jax"))  # hyv_jax/persistent_cache.py: loaded untraced
    assert {name.split("-")[0] for name in kept} == {"abstract_model", "text_encoder", "initial_noise", "denoise_step",
                                                      "scaled_latents", "vae_decode", "video_frames"}, kept
    second = run_sample(tmp_path / "second", tmp_path / "elsewhere", "--compile-cache", str(cache))
    assert set(os.listdir(cache)) == entries and set(os.listdir(cache / "hyv_jax")) == kept  # nothing new
    np.testing.assert_array_equal(read_video(first), read_video(second))


def test_empty_folder_name_turns_the_cache_off(tmp_path):
    run_sample(tmp_path / "out", tmp_path / "xdg", "--compile-cache", "")
    assert not (tmp_path / "xdg").exists()


def test_a_folder_that_cannot_be_created_warns_and_leaves_the_cache_off(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.warns(UserWarning, match="no compilation cache: cannot create"):
        assert enable_compilation_cache(str(tmp_path / "file" / "cache")) is None
    assert not jax.config.jax_compilation_cache_dir
