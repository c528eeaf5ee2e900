"""Text encoder conversion: transformers' Llama / LLaVA (both namings) / CLIP checkpoints, single
and sharded safetensors, strict key checks, wrong architectures, exact round trips, the
tokenizer copied along, and the command line."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import transformers

from helpers import torch_random_init
from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.text_checkpoint import CLIP, LLM, convert_text, export_torch_text, read_converted_text, read_torch_text, restore_text
from hyv_jax.models.text.clip_text import CLIPTextConfig
from hyv_jax.models.text.llama import LlamaConfig

ASSETS = Path(__file__).parents[2] / "hyv_jax" / "assets" / "tiny_text"
LLAMA = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, head_dim=8)
CLIP_TEXT = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 max_position_embeddings=77, bos_token_id=62, eos_token_id=63)


def _llm_config(output_layer=2, **kw) -> LlamaConfig:
    return LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=4, heads=4, kv_heads=2, head_dim=8,
                       output_layer=output_layer, dtype="float32", param_dtype="float32", **kw)


CLIP_CONFIG = CLIPTextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_layers=2, heads=2,
                             dtype="float32", param_dtype="float32")


def _state(module, seed) -> dict[str, np.ndarray]:
    torch_random_init(module, seed)
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _llava_config(**text) -> transformers.LlavaConfig:
    vision = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                                           image_size=28, patch_size=14)
    return transformers.LlavaConfig(vision_config=vision, text_config=transformers.LlamaConfig(**{**LLAMA, **text}))


@pytest.fixture(scope="module")
def llava_state() -> dict:
    """A full LlavaForConditionalGeneration in transformers' current naming (model.language_model.*)."""
    return _state(transformers.LlavaForConditionalGeneration(_llava_config()), 7)


@pytest.fixture(scope="module")
def clip_state() -> dict:
    """A full CLIPModel (text + vision + projections)."""
    return _state(transformers.CLIPModel(transformers.CLIPConfig(
        text_config=CLIP_TEXT, projection_dim=8,
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=28, patch_size=14),
    )), 8)


def _old_llava_naming(state: dict) -> dict:
    renames = (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
               ("model.vision_tower.", "vision_tower."), ("model.multi_modal_projector.", "multi_modal_projector."))
    out = {}
    for k, v in state.items():
        for new, old in renames:
            if k.startswith(new):
                k = old + k[len(new):]
                break
        out[k] = v
    return out


def _language_model(state: dict, prefix: str) -> dict:
    return {prefix + k.removeprefix("model.language_model."): v for k, v in state.items() if k.startswith("model.language_model.")}


@pytest.mark.parametrize("naming", ["llava", "llava_old", "causal_lm", "plain"])
def test_llama_namings_round_trip(llava_state, naming):
    state = {"llava": llava_state, "llava_old": _old_llava_naming(llava_state),
             "causal_lm": {**_language_model(llava_state, "model."), "lm_head.weight": llava_state["lm_head.weight"]},
             "plain": _language_model(llava_state, "")}[naming]
    for output_layer in (2, 4):
        config = _llm_config(output_layer)
        flat = read_torch_text(from_arrays(state, naming), LLM, config, np.float32)
        back = export_torch_text(flat, LLM, config)
        expected = {k.removeprefix("model.language_model."): v for k, v in llava_state.items()
                    if k.startswith("model.language_model.")}
        kept = {k: v for k, v in expected.items() if not any(f"layers.{i}." in k for i in range(output_layer, 4))}
        if output_layer < 4:
            del kept["norm.weight"]
        assert set(back) == set(kept), naming
        for k, v in kept.items():
            np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_clip_from_full_model_and_text_model(clip_state):
    text_only = {k: v for k, v in clip_state.items() if k.startswith("text_model.")}
    for state in (clip_state, text_only):
        back = export_torch_text(read_torch_text(from_arrays(state), CLIP, CLIP_CONFIG, np.float32), CLIP, CLIP_CONFIG)
        assert set(back) == {k.removeprefix("text_model.") for k in text_only}
        for k, v in text_only.items():
            np.testing.assert_array_equal(back[k.removeprefix("text_model.")], v, err_msg=k)


def test_wrong_architecture_and_mismatches(llava_state, clip_state):
    with pytest.raises(CheckpointMismatch, match="is not a Llama / LLaVA language model checkpoint"):
        read_torch_text(from_arrays(clip_state, "clip.safetensors"), LLM, _llm_config())
    with pytest.raises(CheckpointMismatch, match="is not a CLIP text model checkpoint"):
        read_torch_text(from_arrays(llava_state, "llava.safetensors"), CLIP, CLIP_CONFIG)
    with pytest.raises(CheckpointMismatch, match="the checkpoint has 4 layers, the config 6"):
        read_torch_text(from_arrays(llava_state), LLM, LlamaConfig(**{**_llm_config().__dict__, "num_layers": 6}))
    broken = dict(llava_state)
    del broken["model.language_model.layers.1.mlp.up_proj.weight"]
    broken["model.language_model.layers.0.self_attn.q_norm.weight"] = np.ones(8, np.float32)
    with pytest.raises(CheckpointMismatch) as err:
        read_torch_text(from_arrays(broken, "broken"), LLM, _llm_config())
    assert "missing keys (1): layers.1.mlp.up_proj.weight" in str(err.value)
    assert "unexpected keys (1): layers.0.self_attn.q_norm.weight" in str(err.value)
    with pytest.raises(CheckpointMismatch, match=r"embed_tokens.weight \(96, 32\) \(expected \(128, 32\)\)"):
        read_torch_text(from_arrays(llava_state), LLM, LlamaConfig(**{**_llm_config().__dict__, "vocab_size": 128}))


def _sharded_folder(folder: Path, state: dict, tokenizer: Path) -> Path:
    """transformers' layout: two shards + model.safetensors.index.json + tokenizer.json."""
    folder.mkdir()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, names in shards.items():
        write_safetensors(folder / name, {k: state[k] for k in names})
    index = {"metadata": {}, "weight_map": {k: name for name, names in shards.items() for k in names}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    shutil.copyfile(tokenizer, folder / "tokenizer.json")
    return folder


def test_sharded_folder_to_orbax_fp16_with_tokenizer(llava_state, tmp_path):
    folder = _sharded_folder(tmp_path / "llava", llava_state, ASSETS / "llm" / "tokenizer.json")
    _llava_config(rope_theta=500000.0, rms_norm_eps=1e-5).to_json_file(folder / "config.json")
    config = _llm_config()
    convert_text(folder, LLM, config, tmp_path / "out")  # fp16 by default, the official precision
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (folder / "tokenizer.json").read_bytes()
    stored, flat = read_converted_text(tmp_path / "out", LLM)
    assert stored == config and all(v.dtype == np.float16 for v in flat.values())
    expected = read_torch_text(open_checkpoint(folder), LLM, config, np.float16)
    restored = params_to_numpy(restore_text(tmp_path / "out", LLM))
    for path, value in expected.items():
        np.testing.assert_array_equal(restored[path].astype(np.float32), value.astype(np.float32), err_msg=str(path))


def test_missing_tokenizer_is_an_error(clip_state, tmp_path):
    write_safetensors(tmp_path / "model.safetensors", clip_state)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json in"):
        convert_text(tmp_path / "model.safetensors", CLIP, CLIP_CONFIG, tmp_path / "out")


def test_command_line_llm_and_clip(llava_state, clip_state, tmp_path):
    import convert_torch_weights

    write_safetensors(tmp_path / "model.safetensors", clip_state)
    shutil.copyfile(ASSETS / "clip" / "tokenizer.json", tmp_path / "tokenizer.json")
    convert_torch_weights.main(["to-jax", "--model", "clip", "--checkpoint", str(tmp_path / "model.safetensors"),
                                "--out", str(tmp_path / "clip"), "--dtype", "float32", "--config", "configs/tiny.py",
                                "--config.text_encoder.clip.vocab_size=64"])
    convert_torch_weights.main(["to-torch", "--orbax", str(tmp_path / "clip"), "--out", str(tmp_path / "back.safetensors")])
    llava = tmp_path / "llava"
    llava.mkdir()
    write_safetensors(llava / "model.safetensors", llava_state)
    shutil.copyfile(ASSETS / "llm" / "tokenizer.json", llava / "tokenizer.json")
    convert_torch_weights.main(["to-jax", "--model", "llm", "--checkpoint", str(llava), "--out", str(tmp_path / "llm"),
                                "--config", "configs/tiny.py", "--config.text_encoder.llm.vocab_size=96",
                                "--config.text_encoder.llm.intermediate_size=48"])
    config, flat = read_converted_text(tmp_path / "llm", LLM)
    assert config.output_layer == 2 and all(v.dtype == np.float16 for v in flat.values())
    back = open_checkpoint(tmp_path / "back.safetensors")
    text_only = {k.removeprefix("text_model."): v for k, v in clip_state.items() if k.startswith("text_model.")}
    assert set(back.keys()) == set(text_only)
    for k, v in text_only.items():
        np.testing.assert_array_equal(back.get(k), v, err_msg=k)
    assert (tmp_path / "clip" / "tokenizer.json").exists()


def test_hf_config_json_is_checked(llava_state, tmp_path):
    folder = _sharded_folder(tmp_path / "llava", llava_state, ASSETS / "llm" / "tokenizer.json")
    _llava_config(vocab_size=128, rope_theta=500000.0, rms_norm_eps=1e-5).to_json_file(folder / "config.json")
    with pytest.raises(CheckpointMismatch, match=r"vocab_size 128 \(config: 96\); set them in the config, e.g. "
                                                 r"--config.text_encoder.llm.vocab_size=128"):
        convert_text(folder, LLM, _llm_config(), tmp_path / "out")
    transformers.CLIPConfig(text_config=CLIP_TEXT).to_json_file(folder / "config.json")
    with pytest.raises(CheckpointMismatch, match=r"is a 'clip_text_model' model, not a Llama / LLaVA language model"):
        convert_text(folder, LLM, _llm_config(), tmp_path / "out")
