"""Hunyuan-DiT conversion through convert_torch_weights.py: the transformer from the official
layout (a bare .pt as released, and a training save {"ema", "module"}) and the diffusers
layout, back out to both, bit-exact; the HF text-encoder folders (BERT with its sibling
tokenizer folder, mT5) and the SDXL VAE, every key consumed and every parameter filled."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convert_torch_weights import main as convert_main
from helpers import torch_random_init
from hunyuan_dit_helpers import TINY, TINY_VAE, diffusers_config
from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint
from hyv_jax.convert.hunyuan_dit_checkpoint import export_torch_hunyuan_dit, read_converted_hunyuan_dit, read_torch_hunyuan_dit
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.sdxl_vae_checkpoint import read_converted_sdxl_vae
from hyv_jax.convert.text_checkpoint import read_converted_text
from hyv_jax.convert.hunyuan_dit_text_checkpoint import BERT, MT5

TINY_CONFIG = "configs/tiny_hunyuan_dit.py"
ASSETS = Path(__file__).parents[2] / "hyv_jax" / "assets" / "tiny_hunyuan_dit"


def _numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def diffusers_v1_1():
    from diffusers import HunyuanDiT2DModel

    model = HunyuanDiT2DModel(**diffusers_config(dataclasses.replace(TINY, size_style_cond=True)))
    torch_random_init(model, 3)
    return _numpy(model)


def _same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


def test_transformer_round_trips_both_layouts(tmp_path, diffusers_v1_1):
    config = dataclasses.replace(TINY, size_style_cond=True)
    flat = read_torch_hunyuan_dit(from_arrays(diffusers_v1_1), config, np.float32)
    official = export_torch_hunyuan_dit(flat, config, "original")
    assert _same(export_torch_hunyuan_dit(flat, config, "diffusers"), diffusers_v1_1)
    assert "blocks.5.skip_linear.weight" in official and "blocks.3.skip_linear.weight" not in official
    torch.save({k: torch.from_numpy(v) for k, v in official.items()}, tmp_path / "pytorch_model_ema.pt")
    other = {k: torch.from_numpy(v + 1) for k, v in official.items()}
    torch.save({"module": other, "ema": {k: torch.from_numpy(v) for k, v in official.items()}}, tmp_path / "train_save.pt")
    overrides = ["--config.transformer.size_style_cond=True", "--dtype", "float32"]
    for name in ("pytorch_model_ema.pt", "train_save.pt"):
        convert_main(["to-jax", "--model", "hunyuan_dit", "--config", TINY_CONFIG, "--checkpoint", str(tmp_path / name),
                      "--out", str(tmp_path / name.replace(".pt", "_jax")), *overrides])
        stored_config, stored = read_converted_hunyuan_dit(tmp_path / name.replace(".pt", "_jax"))
        assert stored_config == config and _same({"/".join(p): v for p, v in stored.items()}, {"/".join(p): v for p, v in flat.items()})
    for layout, expected in (("original", official), ("diffusers", diffusers_v1_1)):
        out = tmp_path / f"{layout}.safetensors"
        convert_main(["to-torch", "--orbax", str(tmp_path / "train_save_jax"), "--layout", layout, "--out", str(out)])
        source = open_checkpoint(out)
        assert _same({k: source.get(k) for k in source.keys()}, expected)
    # the diffusers file back in: the same parameters again
    again = read_torch_hunyuan_dit(open_checkpoint(tmp_path / "diffusers.safetensors"), config, np.float32)
    assert all(np.array_equal(again[p], flat[p]) for p in flat)


def test_transformer_version_and_key_errors(diffusers_v1_1):
    with pytest.raises(ValueError, match="style embedder .* configs/hunyuan_dit_v1_1.py"):
        read_torch_hunyuan_dit(from_arrays(diffusers_v1_1), TINY, np.float32)
    config = dataclasses.replace(TINY, size_style_cond=True)
    missing = {k: v for k, v in diffusers_v1_1.items() if k != "blocks.2.attn1.to_k.weight"}
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(1\): blocks.2.attn1.to_k.weight"):
        read_torch_hunyuan_dit(from_arrays(missing), config, np.float32)
    extra = {**diffusers_v1_1, "blocks.2.attn1.extra.weight": np.zeros(1, np.float32)}
    with pytest.raises(CheckpointMismatch, match=r"unexpected keys \(1\): blocks.2.attn1.extra.weight"):
        read_torch_hunyuan_dit(from_arrays(extra), config, np.float32)


def test_text_encoder_folders(tmp_path):
    import transformers

    root = tmp_path / "t2i"
    bert = transformers.BertModel(transformers.BertConfig(
        vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64))
    torch_random_init(bert, 1)
    bert.save_pretrained(root / "clip_text_encoder")
    (root / "clip_text_encoder" / "model.safetensors").unlink()  # pytorch_model.bin, as released
    torch.save(bert.state_dict(), root / "clip_text_encoder" / "pytorch_model.bin")
    vocab = list(json.loads((ASSETS / "bert" / "tokenizer.json").read_text())["model"]["vocab"])
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    mt5 = transformers.MT5EncoderModel(transformers.MT5Config(
        vocab_size=512, d_model=48, d_kv=8, num_heads=6, d_ff=64, num_layers=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, feed_forward_proj="gated-gelu"))
    torch_random_init(mt5, 2)
    mt5.save_pretrained(root / "mt5")
    (root / "mt5" / "tokenizer.json").write_bytes((ASSETS / "mt5" / "tokenizer.json").read_bytes())
    for name, checkpoint, module in (("bert", root / "clip_text_encoder", bert), ("mt5", root / "mt5", mt5)):
        out = tmp_path / f"{name}_jax"
        convert_main(["to-jax", "--model", name, "--config", TINY_CONFIG, "--checkpoint", str(checkpoint), "--out", str(out),
                      "--dtype", "float32"])
        convert_main(["to-torch", "--orbax", str(out), "--out", str(tmp_path / f"{name}.safetensors")])
        back = open_checkpoint(tmp_path / f"{name}.safetensors")
        reference = _numpy(module)
        assert all(np.array_equal(back.get(k), reference[k]) for k in back.keys())
        assert (out / "tokenizer.json").exists()
    # the tokenizer.json built from a bare vocab.txt, or one with its tokenizer_config.json,
    # tokenizes as transformers' BertTokenizer
    from hyv_jax.models.text.tokenizer import TextTokenizer

    prompt = ["一只小猫 on a wooden table"]
    theirs = transformers.BertTokenizer(str(root / "tokenizer" / "vocab.txt"))(prompt, padding="max_length", max_length=16,
                                                                               return_tensors="np")
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    convert_main(["to-jax", "--model", "bert", "--config", TINY_CONFIG, "--checkpoint", str(root / "clip_text_encoder" / "pytorch_model.bin"),
                  "--out", str(tmp_path / "bert_jax_2")])
    for folder in ("bert_jax", "bert_jax_2"):
        ours = TextTokenizer.from_folder(tmp_path / folder, 16)(prompt)
        assert np.array_equal(ours[0], theirs["input_ids"]) and np.array_equal(ours[1], theirs["attention_mask"])
    config, flat = read_converted_text(tmp_path / "mt5_jax", MT5)
    assert config.num_layers == 2 and ("relative_attention_bias", "weight") in flat
    read_converted_text(tmp_path / "bert_jax", BERT)


def test_sdxl_vae_folder(tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        block_out_channels=TINY_VAE.block_out_channels, layers_per_block=TINY_VAE.layers_per_block,
                        norm_num_groups=TINY_VAE.norm_groups)
    torch_random_init(vae, 4)
    vae.save_pretrained(tmp_path / "sdxl-vae-fp16-fix")
    convert_main(["to-jax", "--model", "sdxl_vae", "--config", TINY_CONFIG, "--checkpoint", str(tmp_path / "sdxl-vae-fp16-fix"),
                  "--out", str(tmp_path / "vae_jax")])
    config, flat = read_converted_sdxl_vae(tmp_path / "vae_jax")
    assert config == TINY_VAE and all(a.dtype == np.float32 for a in flat.values())
    convert_main(["to-torch", "--orbax", str(tmp_path / "vae_jax"), "--out", str(tmp_path / "vae.safetensors")])
    back = open_checkpoint(tmp_path / "vae.safetensors")
    assert _same({k: back.get(k) for k in back.keys()}, _numpy(vae))


def test_video_config_names_the_dit_configs():
    for model in ("hunyuan_dit", "bert", "mt5", "sdxl_vae"):
        with pytest.raises(ValueError, match="not a Hunyuan-DiT one: pass --config configs/hunyuan_dit.py"):
            convert_main(["to-jax", "--model", model, "--checkpoint", "x.pt", "--out", "y"])
