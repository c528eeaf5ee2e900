"""sample.py's default picks the shipped trained tiny default when the repository holds one,
and random weights otherwise (weights are not loaded here)."""

import json

import sample
from configs import load_config
from hyv_jax.loading.shipped import shipped_paths, shipped_scaling_factor


def test_shipped_paths_need_both_folders(tmp_path):
    assert shipped_paths(tmp_path) is None
    (tmp_path / "transformer").mkdir()
    assert shipped_paths(tmp_path) is None
    (tmp_path / "vae").mkdir()
    paths = shipped_paths(tmp_path)
    assert (paths.transformer, paths.vae) == (tmp_path / "transformer", tmp_path / "vae")
    assert paths.missing() == ["llm", "clip"]


def test_default_uses_the_shipped_folders_only_without_checkpoint_flags(tmp_path, monkeypatch):
    for name, kind in (("transformer", "hunyuan_video_transformer"), ("vae", "hunyuan_video_vae")):
        (tmp_path / "assets" / name).mkdir(parents=True)
        (tmp_path / "assets" / name / "hyv_jax.json").write_text(json.dumps({"model": kind}))
    monkeypatch.setattr(sample, "shipped_paths", lambda: shipped_paths(tmp_path / "assets"))
    p = sample.plan(["--save-path", str(tmp_path)])
    assert p.config_path == sample.TINY_DEFAULT_CONFIG and p.paths.transformer == tmp_path / "assets" / "transformer"
    assert p.prompt == "a red circle moving left"  # a prompt in the scenes' vocabulary
    p = sample.plan(["--save-path", str(tmp_path), "--config", "configs/tiny_default.py", "--vae-dir", str(tmp_path / "assets" / "vae")])
    assert p.paths.transformer is None  # an explicit flag: the shipped default stays out
    p = sample.plan(["--save-path", str(tmp_path), "--config", "configs/tiny.py"])
    assert p.paths.missing() == ["transformer", "vae", "llm", "clip"]  # tiny.py: random weights


def test_without_the_shipped_default_the_tiny_config_runs_random(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "shipped_paths", lambda: None)
    p = sample.plan(["--save-path", str(tmp_path)])
    assert p.config_path == sample.TINY_CONFIG and len(p.paths.missing()) == 4 and p.prompt == sample.DEFAULT_PROMPT


def test_tiny_default_config_and_the_shipped_scaling_factor(tmp_path):
    config = load_config("configs/tiny_default.py")
    assert config.transformer.in_channels == config.transformer.out_channels == config.vae.latent_channels
    assert config.text_encoder.llm_max_length == 95 + 32
    assert shipped_scaling_factor(tmp_path) is None
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "hyv_jax.json").write_text(json.dumps({"config": {"scaling_factor": 0.9}}))
    assert shipped_scaling_factor(tmp_path) == 0.9
    assert config.vae.scaling_factor == shipped_scaling_factor()  # the repository's default carries the stored factor
