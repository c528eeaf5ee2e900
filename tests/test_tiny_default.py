"""sample.py's default picks the shipped trained tiny default when the repository holds one,
and random weights otherwise (weights are not loaded here)."""

import json

import sample
from configs import load_config
from hyv_jax.loading.shipped import shipped_paths, shipped_scaling_factor


def test_shipped_paths_need_all_four_folders(tmp_path):
    for name in ("transformer", "vae", "llm", "clip"):
        assert shipped_paths(tmp_path) is None
        (tmp_path / name).mkdir()
    paths = shipped_paths(tmp_path)
    assert (paths.transformer, paths.vae, paths.llm, paths.clip) == tuple(tmp_path / n for n in ("transformer", "vae", "llm", "clip"))
    assert paths.missing() == []


def test_the_shipped_text_encoders_are_the_seeded_random_ones():
    """The transformer learned from the embeddings of TEXT_ENCODER_SEED's random encoders, which
    data preparation for a new run builds again: the shipped folders must hold them (a changed
    initialiser would make a retrained default disagree with the shipped encoders). To the last
    bit only at XLA's default optimisation level: the suite's level 0 (conftest.py) moves some
    values by an ulp (1.8e-7 relative), one more reason the default ships them."""
    import jax
    import numpy as np
    from flax import nnx

    from hyv_jax.convert.text_checkpoint import CLIP, LLM, restore_text
    from hyv_jax.loading.models import seeded_text_model
    from hyv_jax.loading.shipped import ASSET_DIR, TEXT_ENCODER_SEED

    text_config = load_config("configs/tiny_default.py").text_encoder
    for name, spec in (("llm", LLM), ("clip", CLIP)):
        shipped = nnx.to_flat_state(nnx.state(restore_text(ASSET_DIR / name, spec), nnx.Param))
        seeded = nnx.to_flat_state(nnx.state(seeded_text_model(text_config, name, TEXT_ENCODER_SEED), nnx.Param))
        assert [p for p, _ in shipped] == [p for p, _ in seeded]
        for (path, a), (_, b) in zip(shipped, seeded, strict=True):
            np.testing.assert_allclose(jax.device_get(a.get_value()), jax.device_get(b.get_value()), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name} {path}")


def test_default_uses_the_shipped_folders_only_without_checkpoint_flags(tmp_path, monkeypatch):
    for name, kind in (("transformer", "hunyuan_video_transformer"), ("vae", "hunyuan_video_vae"),
                       ("llm", "llama_text_encoder"), ("clip", "clip_text_encoder")):
        (tmp_path / "assets" / name).mkdir(parents=True)
        (tmp_path / "assets" / name / "hyv_jax.json").write_text(json.dumps({"model": kind}))
        (tmp_path / "assets" / name / "tokenizer.json").write_text("{}")
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
