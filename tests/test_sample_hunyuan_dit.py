"""sample.py with a Hunyuan-DiT config: upstream's sample_t2i.py flags into checked options,
the other mode's flags refused in one line, and the tiny config end to end (random weights,
the shipped tokenizers, both text encoders, the DDPM loop with CFG, the VAE) writing PNGs."""

import pytest

import sample
from hyv_jax.io.video import read_video
from hyv_jax.sampling.hunyuan_dit_options import NEGATIVE_PROMPT


def test_upstream_flags_and_defaults(tmp_path):
    p = sample.plan(["--config", sample.TINY_DIT_CONFIG, "--save-path", str(tmp_path)])
    o = p.options
    assert (o.steps, o.solver, o.cfg_scale, o.seed, o.negative_prompt, o.num_images) == (10, "ddpm", 6.0, 42, NEGATIVE_PROMPT, 1)
    assert p.prompt == "一只小猫" and p.paths.missing() == ["transformer", "vae", "bert", "mt5"]
    p = sample.plan(["--config", sample.TINY_DIT_CONFIG, "--save-path", str(tmp_path), "--image-size", "100", "--sampler", "dpmms",
                     "--infer-steps", "7", "--cfg-scale", "4.5", "--negative", "", "--batch-size", "3", "--seed", "5",
                     "--resolution-binning", "--size-cond", "512", "768"])
    o = p.options
    assert (o.height, o.width, o.size, o.solver, o.steps, o.cfg_scale, o.num_images, o.seed) == (100, 100, (1024, 1024), "dpmms", 7, 4.5, 3, 5)
    assert o.negative_prompt == NEGATIVE_PROMPT and o.size_cond == (512, 768)  # an empty negative is upstream's default
    v11 = sample.plan(["--config", sample.DIT_V1_1_CONFIG, "--save-path", str(tmp_path),
                       "--config.allow_random_weights=True", "--config.text_encoder.shipped_tokenizers=tiny_hunyuan_dit"])
    assert (v11.options.size_cond, v11.options.beta_end, v11.config.transformer.size_style_cond) == ((1024, 1024), 0.03, True)


def test_bad_inputs_fail_in_one_line(tmp_path, capsys):
    def fails(argv, message):
        with pytest.raises(SystemExit) as exit_info:
            sample.plan([*argv, "--save-path", str(tmp_path)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err

    fails(["--config", sample.TINY_DIT_CONFIG, "--video-length", "5", "--ring-degree", "2"],
          "--video-length --ring-degree do not apply to Hunyuan-DiT text to image")
    fails(["--config", sample.TINY_DIT_CONFIG, "--lora", "style.safetensors"], "--lora does not apply to Hunyuan-DiT")
    fails(["--sampler", "ddim"], "--sampler does not apply to configs/")
    fails(["--config", sample.DIT_CONFIG], "missing: transformer, vae, bert, mt5")
    fails(["--config", sample.DIT_CONFIG, "--model-base", str(tmp_path)], "transformer checkpoint folder")
    fails(["--config", sample.TINY_DIT_CONFIG, "--image-size", "8", "8"], "at least 16 pixels")
    fails(["--config", sample.TINY_DIT_CONFIG, "--image-size", "64", "64", "64"], "--image-size takes the height and width")


def test_tiny_config_writes_pngs(tmp_path):
    written = sample.main(["--config", sample.TINY_DIT_CONFIG, "--prompt", "a cute cat, 一只小猫", "--infer-steps", "2",
                           "--batch-size", "2", "--seed", "3", "--save-path", str(tmp_path), "--config.parallel.mesh.fsdp=1"])
    assert [p.name.split("_")[1] for p in written] == ["seed3", "seed4"]
    images = [read_video(p)[0] for p in written]
    assert all(image.shape == (64, 64, 3) for image in images)
    assert (images[0] != images[1]).any() and images[0].std() > 0
