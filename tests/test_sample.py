"""sample.py: flags and config into checked options, and every bad input rejected with a
message before any model loads (these tests load none)."""

import json

import pytest

import sample
from hyv_jax.loading.paths import ModelPaths


def fails(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.plan(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    return err


def test_without_shipped_weights_defaults_run_the_tiny_config_with_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(sample, "shipped_paths", lambda: None)
    p = sample.plan(["--save-path", str(tmp_path), "--seed", "3"])
    assert p.config_path == sample.TINY_CONFIG and p.paths.missing() == ["transformer", "vae", "llm", "clip"]
    o = p.options
    assert (o.height, o.width, o.frames, o.steps, o.flow_shift, o.embedded_guidance, o.cfg_scale, o.seed) == (64, 64, 9, 10, 7.0, 6.0, 1.0, 3)


def test_flags_and_config_overrides(tmp_path):
    p = sample.plan(["--save-path", str(tmp_path), "--video-size", "32", "48", "--video-length", "5", "--infer-steps", "3",
                     "--flow-shift", "5", "--embedded-cfg-scale", "4.5", "--cfg-scale", "2", "--neg-prompt", "dark",
                     "--num-videos", "2", "--no-vae-tiling", "--noise-dtype", "float32", "--precision", "bf16",
                     "--first-block-cache", "0.08", "--config.sampling.sigma_spacing=diffusers", "--config.transformer.heads=4"])
    o = p.options
    assert o.first_block_cache == 0.08
    assert (o.height, o.width, o.frames, o.steps, o.flow_shift, o.embedded_guidance, o.cfg_scale) == (32, 48, 5, 3, 5.0, 4.5, 2.0)
    assert (o.negative_prompt, o.num_videos, o.vae_tiling, o.noise_dtype, o.sigma_spacing) == ("dark", 2, False, "float32", "diffusers")
    assert p.config.transformer.heads == 4 and p.config.transformer.dtype == "bfloat16"


def test_official_flags(tmp_path, capsys):
    p = sample.plan(["--save-path", str(tmp_path / "out"), "--save-path-suffix", "v2", "--video-size", "50",
                     "--text-encoder-precision", "bf16", "--text-encoder-precision-2", "fp32", "--vae-precision", "fp16",
                     "--add-pos-prompt", "Realistic. ", "--add-neg-prompt", "Blurry, ", "--neg-prompt", "dark", "--prompt", "a fox",
                     "--fps", "12"])
    assert "note: 50x50 rounded up to 64x64 (multiples of 16, as upstream)" in capsys.readouterr().out
    o = p.options
    assert (o.height, o.width, o.noise_dtype, o.negative_prompt, p.prompt, p.fps) == (64, 64, "bfloat16", "Blurry, dark",
                                                                                      "Realistic. a fox", 12)
    assert p.save_path == tmp_path / "out_v2" and p.save_path.is_dir()
    te = p.config.text_encoder
    assert (te.llm.dtype, te.clip.dtype, p.config.vae.dtype) == ("bfloat16", "float32", "float16")
    # the noise dtype follows the LLM's unless given
    assert sample.plan(["--save-path", str(tmp_path), "--text-encoder-precision", "fp32"]).options.noise_dtype == "float32"
    assert sample.plan(["--save-path", str(tmp_path), "--text-encoder-precision", "fp32",
                        "--noise-dtype", "float16"]).options.noise_dtype == "float16"


def test_context_flags_set_the_mesh_and_the_strategy(tmp_path):
    def parallel(*flags):
        p = sample.plan(["--save-path", str(tmp_path), *flags])
        return p.config.parallel.mesh.context, p.config.parallel.context_strategy, p.config.parallel.ulysses_degree

    assert parallel() == (1, "none", 1)
    assert parallel("--ulysses-degree", "2") == (2, "ulysses", 2)
    assert parallel("--ring-degree", "8") == (8, "ring", 1)
    assert parallel("--ulysses-degree", "2", "--ring-degree", "4") == (8, "usp", 2)
    p = sample.plan(["--save-path", str(tmp_path), "--coordinator-address", "127.0.0.1:1234", "--num-processes", "2",
                     "--process-id", "1"])
    assert (p.config.parallel.distributed, p.config.parallel.coordinator_address, p.config.parallel.num_processes,
            p.config.parallel.process_id) == (True, "127.0.0.1:1234", 2, 1)


def test_released_config_keeps_upstream_defaults(tmp_path, capsys):
    folders = {}
    for name in ("transformer", "vae", "llm", "clip"):
        folder = tmp_path / "ckpts" / name
        folder.mkdir(parents=True)
        (folder / "hyv_jax.json").write_text(json.dumps({"model": ModelPaths().converted()[name][1]}))
        if name in ("llm", "clip"):
            (folder / "tokenizer.json").write_text("{}")
        folders[name] = folder
    p = sample.plan(["--model-base", str(tmp_path / "ckpts"), "--save-path", str(tmp_path / "out")])
    o = p.options
    assert p.config_path == sample.RELEASED_CONFIG and not p.paths.missing()
    assert (o.height, o.width, o.frames, o.steps, o.flow_shift, o.embedded_guidance, o.cfg_scale, o.vae_tiling, o.noise_dtype) == (
        720, 1280, 129, 50, 7.0, 6.0, 1.0, True, "float16")
    assert "Aerial view" in o.negative_prompt
    (folders["clip"] / "tokenizer.json").unlink()
    fails(["--model-base", str(tmp_path / "ckpts"), "--save-path", str(tmp_path / "out")], "clip folder", capsys)


@pytest.mark.parametrize("argv, message", [
    (["--video-size", "0", "64"], "--video-size takes one positive size (a square) or height and width"),
    (["--first-block-cache", "-1"], "first block cache threshold must be >= 0"),
    (["--first-block-cache", "0.1", "--ref-image", "x.png", "--infer-steps", "30"], "--first-block-cache and the step cache"),
    (["--ulysses-degree", "3"], "the Ulysses degree 3 must divide the model's 2 attention heads: use one of [1, 2]"),
    (["--ring-degree", "0"], "the Ulysses and ring degrees must be >= 1"),
    (["--video-size", "64", "96", "128"], "--video-size takes one positive size"),
    (["--video-length", "10"], "4k + 1 frames (try 9 or 13)"),
    (["--infer-steps", "0"], "steps must be >= 1"),
    (["--cfg-scale", "0.5"], "cfg scale"),
    (["--config.sampling.stepz=3"], "unknown config key 'sampling.stepz'"),
    (["--bogus"], "unknown arguments ['--bogus']"),
    (["--config", "configs/nope.py"], "does not exist"),
])
def test_bad_inputs(argv, message, capsys, tmp_path):
    fails(["--save-path", str(tmp_path)] + argv, message, capsys)


def test_missing_checkpoints_and_tokenizers(capsys, tmp_path):
    save = ["--save-path", str(tmp_path / "out")]
    fails(save + ["--transformer-dir", str(tmp_path / "nope")], "has no hyv_jax.json", capsys)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "hyv_jax.json").write_text(json.dumps({"model": "hunyuan_video_transformer"}))
    err = fails(save + ["--transformer-dir", str(tmp_path / "t")], "needs converted checkpoints, missing: vae, llm, clip", capsys)
    assert "convert_torch_weights.py" in err
    (tmp_path / "llm").mkdir()
    (tmp_path / "llm" / "hyv_jax.json").write_text(json.dumps({"model": "llama_text_encoder"}))
    fails(save + ["--config", "configs/tiny.py", "--llm-dir", str(tmp_path / "llm")], "has no tokenizer.json", capsys)


def test_a_folder_of_another_model_is_refused_before_loading(capsys, tmp_path):
    """Before: a VAE folder passed as the transformer failed only while loading, with Orbax's message."""
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "hyv_jax.json").write_text(json.dumps({"model": "hunyuan_video_vae"}))
    fails(["--save-path", str(tmp_path / "out"), "--config", "configs/tiny.py", "--transformer-dir", str(tmp_path / "vae")],
          f"transformer folder {tmp_path / 'vae'} holds a converted hunyuan_video_vae checkpoint, not a hunyuan_video_transformer", capsys)
    (tmp_path / "t2v").mkdir()
    (tmp_path / "t2v" / "hyv_jax.json").write_text(json.dumps({"model": "hunyuan_video_transformer"}))
    fails(["--save-path", str(tmp_path / "out"), "--transformer-dir", str(tmp_path / "t2v"), "--ref-image", "x.png"],
          "holds a converted hunyuan_video_transformer checkpoint, not a hunyuan_custom_transformer", capsys)


def test_save_path_that_is_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    fails(["--save-path", str(tmp_path / "file")], "pass a writable --save-path", capsys)


def test_compile_cache_that_cannot_be_written(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    fails(["--save-path", str(tmp_path / "out"), "--compile-cache", str(tmp_path / "file" / "cache")],
          "cannot write compiled programs", capsys)
    assert sample.plan(["--save-path", str(tmp_path / "out"), "--compile-cache", ""]).compile_cache == ""
