"""sample.py's default picks the shipped trained tiny default when the repository holds one,
and random weights otherwise (weights are not loaded here)."""

import sample
from hyv_jax.sampling.tiny_default import shipped_paths


def test_shipped_paths_need_both_folders(tmp_path):
    assert shipped_paths(tmp_path) is None
    (tmp_path / "transformer").mkdir()
    assert shipped_paths(tmp_path) is None
    (tmp_path / "vae").mkdir()
    paths = shipped_paths(tmp_path)
    assert (paths.transformer, paths.vae) == (tmp_path / "transformer", tmp_path / "vae")
    assert paths.missing() == ["llm", "clip"]


def test_default_uses_the_shipped_folders_only_without_checkpoint_flags(tmp_path, monkeypatch):
    for name in ("transformer", "vae"):
        (tmp_path / "assets" / name).mkdir(parents=True)
        (tmp_path / "assets" / name / "hyv_jax.json").write_text("{}")
    monkeypatch.setattr(sample, "shipped_paths", lambda: shipped_paths(tmp_path / "assets"))
    p = sample.plan(["--save-path", str(tmp_path)])
    assert p.config_path == sample.TINY_CONFIG and p.paths.transformer == tmp_path / "assets" / "transformer"
    p = sample.plan(["--save-path", str(tmp_path), "--config", "configs/tiny.py", "--vae-dir", str(tmp_path / "assets" / "vae")])
    assert p.paths.transformer is None  # an explicit flag: the shipped default stays out
