"""sample.py --lora: files read and checked before any model loads, a scale of 0 samples what
no LoRA does, and both pipelines merge the LoRAs (several add) into the loaded transformer."""

import jax
import numpy as np
import pytest
from flax import nnx
from lora_cases import random_lora, write_file, write_kohya, write_peft, zeros_original
from PIL import Image

import sample
from configs import load_config
from hyv_jax.convert.custom_checkpoint import abstract_custom
from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.fp8_weights import fp8_groups
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_table import transformer_rules
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import load_transformer, shardings_for
from hyv_jax.loading.paths import CustomPaths, ModelPaths
from hyv_jax.lora.merge import merge_lora_files, read_lora_files
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.sampling.custom_pipeline import CustomVideoPipeline
from hyv_jax.sampling.pipeline import TextToVideoPipeline

DEFAULT = TransformerConfig.from_mapping(load_config("configs/tiny_default.py").transformer)
CUSTOM = load_config("configs/tiny_custom.py")
TINY = load_config("configs/tiny.py")
ONE_FRAME = ["--video-size", "32", "32", "--video-length", "1", "--infer-steps", "2", "--seed", "4", "--prompt", "a red circle moving left"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("loras")
    shapes = zeros_original(DEFAULT)
    lora = random_lora(shapes, rank=4, modules={"double_blocks.0.img_attn_qkv", "single_blocks.1.linear1", "final_layer.linear"})
    write_file(d / "default.safetensors", write_kohya(shapes, {m: (5 * a, 5 * b, al) for m, (a, b, al) in lora.items()}))
    custom = zeros_original(CustomTransformerConfig.from_mapping(CUSTOM.transformer), abstract_custom, custom_rules)
    write_file(d / "custom.safetensors", write_kohya(custom, random_lora(custom, modules={"audio_models.0.to_q", "single_blocks.0.linear2"})))
    t2v = zeros_original(TransformerConfig.from_mapping(TINY.transformer))
    write_file(d / "t2v.safetensors", write_peft(t2v, random_lora(t2v, modules={"guidance_in.mlp.0", "double_blocks.0.img_mod.linear"}),
                                                "transformer."))
    write_file(d / "t2v_blocks.safetensors", write_peft(t2v, random_lora(t2v, modules={"double_blocks.1.txt_mlp.fc1",
                                                                                       "single_blocks.0.modulation.linear"}), "diffusion_model."))
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "ref.png")
    return d


def test_lora_flags_are_read_and_checked_before_models_load(files, tmp_path, capsys):
    p = sample.plan(["--save-path", str(tmp_path), "--lora", f"{files}/default.safetensors:0.5", "--lora", str(files / "default.safetensors")])
    assert [scale for _, scale in p.loras] == [0.5, 1.0]
    assert p.loras[0][0].format == "kohya"
    custom = ["--save-path", str(tmp_path), "--ref-image", str(files / "ref.png")]
    assert len(sample.plan([*custom, "--lora", str(files / "custom.safetensors")]).loras) == 1
    for argv, message in (([*custom, "--lora", str(files / "t2v.safetensors")], "transformer.guidance_in.mlp.0.lora_A.weight"),
                          (["--lora", str(files / "missing.safetensors:2")], "missing.safetensors does not exist"),
                          (["--lora", str(files / "custom.safetensors")], "lora_unet_audio_models_0_to_q.lora_down.weight")):
        with pytest.raises(SystemExit) as exit_info:
            sample.plan([*argv, "--save-path", str(tmp_path)])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    with pytest.warns(UserWarning, match="lora_unet_audio_models_0_to_q.lora_down.weight"):
        sample.plan(["--save-path", str(tmp_path), "--lora", str(files / "custom.safetensors"), "--lora-skip-unknown"])


def test_scale_zero_samples_what_no_lora_does(files, tmp_path, capsys):
    def image(*flags):
        (path,) = sample.main([*ONE_FRAME, "--save-path", str(tmp_path / str(len(flags))), *flags])
        return np.asarray(Image.open(path))

    plain = image()
    zero = image("--lora", f"{files}/default.safetensors:0")
    assert "default.safetensors: kohya, 4 parameter slices, rank 4; scale 0.0" in capsys.readouterr().out
    assert np.array_equal(plain, zero)


@pytest.mark.parametrize("mode,memory", [("text-to-video", "resident"), ("HunyuanCustom", "resident"),
                                         ("text-to-video", "offload"), ("HunyuanCustom", "fp8+offload")])
def test_pipelines_merge_the_loras_into_the_loaded_transformer(mode, memory, files):
    """The LoRAs merge into the weights as loaded, before the memory mode quantises or offloads
    them: the placed DiT equals the plain model with the files merged, then placed in that mode."""
    memory = {"resident": MemoryMode(), "offload": MemoryMode(offload=True), "fp8+offload": MemoryMode(fp8=True, offload=True)}[memory]
    if mode == "HunyuanCustom":
        config, file, pipeline_class, paths = CUSTOM, "custom.safetensors", CustomVideoPipeline, CustomPaths()
        transformer, rules = CustomTransformerConfig.from_mapping(CUSTOM.transformer), custom_rules
    else:
        config, file, pipeline_class, paths = TINY, "t2v_blocks.safetensors", TextToVideoPipeline, ModelPaths()
        transformer, rules = TransformerConfig.from_mapping(TINY.transformer), transformer_rules
    loras = [(files / file, 0.7), (files / file, 0.6)]
    read = read_lora_files(transformer, loras)
    pipeline = pipeline_class.from_config(config, paths, loras=read, memory=memory)
    expected = load_transformer(transformer)
    before = params_to_numpy(expected)
    merge_lora_files(expected, loras)
    changed = {p for p, v in params_to_numpy(expected).items() if not np.array_equal(before[p], v)}
    assert changed == {path for updates, _ in read for path, _ in updates.terms}
    expected = memory.place(expected, shardings_for(expected, None), fp8_groups(rules(transformer)))
    got, want = jax.tree.leaves(pipeline.transformer_state()), jax.tree.leaves(nnx.state(expected))
    assert len(got) == len(want)
    assert all(g.dtype == w.dtype and g.sharding == w.sharding and np.array_equal(np.asarray(g), np.asarray(w)) for g, w in zip(got, want))
