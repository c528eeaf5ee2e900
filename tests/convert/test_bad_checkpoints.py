"""Checkpoints the converter must refuse with one clear line (fp8 without its map, integer
tensors, NaN/inf, float16 overflow, truncated or foreign files), and output folders it must
never lose: written beside --out and renamed when whole, replaced only with --overwrite, never
a folder that is not a converted checkpoint of the same model."""

import errno
import json
import struct

import ml_dtypes
import numpy as np
import pytest
import torch
from helpers import fixture_params, load_fixture, run_cli

import convert_torch_weights
from configs import load_config
from hyv_jax.convert import orbax_io
from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint, torch_to_numpy
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.safetensors_io import SafetensorsFile, write_safetensors
from hyv_jax.convert.transformer_checkpoint import convert_transformer, read_torch_transformer, restore_transformer
from hyv_jax.models.transformer import TransformerConfig

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)
WEIGHT = "double_blocks.0.img_attn_qkv.weight"


@pytest.fixture(scope="module")
def original():
    return fixture_params(load_fixture("hyvideo_t2v_dit_tiny"))


def convert(argv, capsys):
    """The converter's command line in-process: (exit status, stderr lines)."""
    code, out = run_cli(convert_torch_weights.main, argv, "convert_torch_weights.py", capsys)
    return code, out.err.splitlines()


def to_jax(checkpoint, out, *extra):
    return ["to-jax", "--checkpoint", str(checkpoint), "--out", str(out), "--config", "configs/tiny.py", "--dtype", "float32", *extra]


def fp8_checkpoint(original, tmp_path):
    """The tiny weights with the blocks' matrices in float8_e4m3fn, and their scale map."""
    scales, tensors = {}, {}
    for k, v in original.items():
        if k.endswith(".weight") and v.ndim == 2 and "blocks" in k:
            scale = float(np.abs(v).max() / 448.0)
            tensors[k], scales[k.removesuffix(".weight")] = torch.from_numpy(v / scale).to(torch.float8_e4m3fn), torch.tensor(scale)
        else:
            tensors[k] = torch.from_numpy(v.copy())
    torch.save({"module": tensors}, tmp_path / "fp8.pt")
    torch.save(scales, tmp_path / "fp8_map.pt")
    return tensors, scales


def test_fp8_without_its_map_is_refused_and_with_it_dequantised_as_upstream(original, tmp_path, capsys):
    tensors, scales = fp8_checkpoint(original, tmp_path)
    code, err = convert(to_jax(tmp_path / "fp8.pt", tmp_path / "out"), capsys)
    assert code == 1 and len(err) == 1 and f"stores {len(scales)} tensors in fp8" in err[0] and "--fp8-map" in err[0], err
    assert not (tmp_path / "out").exists()
    torch.save({k: v.float() for k, v in tensors.items()}, tmp_path / "float.pt")
    with pytest.raises(ValueError, match="stores no tensor in fp8; leave --fp8-map out"):
        open_checkpoint(tmp_path / "float.pt", tmp_path / "fp8_map.pt")
    # a library caller passing fp8 arrays without the map is refused as well
    with pytest.raises(CheckpointMismatch, match=f"{WEIGHT} is stored in float8_e4m3fn without a scale"):
        read_torch_transformer(from_arrays({**original, WEIGHT: torch_to_numpy(tensors[WEIGHT])}), TINY)
    # with the map, in bfloat16: upstream's bf16(w8) * bf16(scale), one rounding (fp8_optimization.py:50-53)
    flat = read_torch_transformer(open_checkpoint(tmp_path / "fp8.pt", tmp_path / "fp8_map.pt", ml_dtypes.bfloat16), TINY)
    module = WEIGHT.removesuffix(".weight")
    official = (tensors[WEIGHT].to(torch.bfloat16) * scales[module].to(torch.bfloat16)).view(torch.int16).numpy()
    ours = flat[("double_blocks", "img_attn_qkv", "kernel")][0]
    np.testing.assert_array_equal(np.moveaxis(ours.reshape(ours.shape[0], -1), 0, 1).view(np.int16), official)


def test_integer_tensors_are_refused_by_name(original, tmp_path, capsys):
    quantised = {k: torch.from_numpy(v.copy()) for k, v in original.items()}
    quantised[WEIGHT] = torch.from_numpy(np.round(original[WEIGHT] * 100).astype(np.int8))
    torch.save(quantised, tmp_path / "int8.pt")
    code, err = convert(to_jax(tmp_path / "int8.pt", tmp_path / "out"), capsys)
    assert code == 1 and len(err) == 1 and f"{WEIGHT} is stored as int8, not floating point" in err[0], err
    # a view without the file's dtypes is checked tensor by tensor
    with pytest.raises(CheckpointMismatch, match=f"{WEIGHT} is stored as int8"):
        read_torch_transformer(from_arrays({k: v.numpy() for k, v in quantised.items()}).renamed("none."), TINY)


@pytest.mark.parametrize("value, dtype, message", [
    (np.nan, "float32", "holds 1 NaN/inf values"),
    (np.inf, "bfloat16", "holds 1 NaN/inf values"),
    (1e5, "float16", "has values up to 1e+05, beyond the range of float16 (65504); convert to bfloat16 or float32"),
])
def test_non_finite_values_are_refused_with_the_parameter_named(original, tmp_path, capsys, value, dtype, message):
    broken = dict(original)
    broken[WEIGHT] = original[WEIGHT].copy()
    broken[WEIGHT][3, 2] = value
    write_safetensors(tmp_path / "w.safetensors", broken)
    code, err = convert([*to_jax(tmp_path / "w.safetensors", tmp_path / "out")[:-1], dtype], capsys)
    assert code == 1 and len(err) == 1, err
    assert f"{WEIGHT} (parameter double_blocks/img_attn_qkv/kernel, layer 0) {message}" in err[0], err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_damaged_and_foreign_files_give_one_clear_line(original, tmp_path, capsys):
    good = tmp_path / "good.safetensors"
    write_safetensors(good, original)
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.safetensors").write_bytes(b"\xff" * 64)
    (tmp_path / "notjson.safetensors").write_bytes(struct.pack("<Q", 8) + b"{{{{{{{{")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    torch.save({"a": torch.ones(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    torch.save({k: torch.from_numpy(v.copy()) for k, v in original.items()}, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:-3000])
    expected = {
        "truncated.safetensors": "truncated.safetensors is truncated: tensor",
        "garbage.safetensors": "is not a .safetensors file or is truncated (64 bytes; its first 8 bytes give a header of 18446744073709551615",
        "notjson.safetensors": "is not a .safetensors file: its header is not JSON",
        "tiny.safetensors": "is not a .safetensors file or is truncated (3 bytes",
        "legacy.pt": "uses PyTorch's legacy (pre-1.6, non-zip) format, which cannot be memory-mapped; save it again",
        "garbage.pt": "is not a PyTorch checkpoint (torch.save writes zip archives",
        "cut.pt": "is not a PyTorch checkpoint (torch.save writes zip archives; this file is not one, or is truncated)",
    }
    for name, message in expected.items():
        code, err = convert(to_jax(tmp_path / name, tmp_path / "out"), capsys)
        assert code == 1 and len(err) == 1 and message in err[0] and "--debug" not in err[0], (name, err)
    with pytest.raises(ValueError, match="tensor a F32 \\(2,\\) needs 8 bytes, its offsets give 4"):
        (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 64) + json.dumps(
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}).encode().ljust(64) + b"\0" * 4)
        SafetensorsFile(tmp_path / "bad.safetensors")


def converted(original, tmp_path, name="ckpt", overwrite=False):
    if not (tmp_path / "model.safetensors").exists():
        write_safetensors(tmp_path / "model.safetensors", original)
    convert_transformer(tmp_path / "model.safetensors", TINY, tmp_path / name, dtype=np.float32, overwrite=overwrite)
    return tmp_path / name


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_existing_out_needs_overwrite_and_is_replaced_only_when_the_new_one_is_whole(original, tmp_path, capsys, monkeypatch):
    out = converted(original, tmp_path)
    before = snapshot(out)
    code, err = convert(to_jax(tmp_path / "model.safetensors", out), capsys)
    assert code == 1 and err == [f"convert_torch_weights.py: error: {out} already holds a converted hunyuan_video_transformer "
                                 "checkpoint; pass --overwrite to replace it (the old one stays until the new one is complete)"]
    assert snapshot(out) == before

    # the disk fills while the new one is written: the old checkpoint is untouched, nothing is left over
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(orbax_io.ocp.StandardCheckpointer, "wait_until_finished", full_disk)
    code, err = convert(to_jax(tmp_path / "model.safetensors", out, "--overwrite"), capsys)
    assert code == 1 and "No space left on device" in err[0], err
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model.safetensors"]
    monkeypatch.undo()

    code, err = convert(to_jax(tmp_path / "model.safetensors", out, "--overwrite"), capsys)
    assert code == 0, err
    assert json.loads((out / "hyv_jax.json").read_text())["files"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "model.safetensors"]
    expected = read_torch_transformer(from_arrays(original), TINY, np.float32)
    restored = orbax_io.restore_params(out, {p: a.shape for p, a in expected.items()}, {p: np.float32 for p in expected})
    assert all(np.array_equal(restored[p], expected[p]) for p in expected)


def test_folders_that_are_not_our_checkpoint_of_that_model_are_never_replaced(original, tmp_path, capsys):
    user = tmp_path / "user"
    (user / "params").mkdir(parents=True)
    (user / "notes.txt").write_text("mine")
    ours_plus = converted(original, tmp_path, "ours_plus")
    (ours_plus / "notes.txt").write_text("mine too")
    vae = tmp_path / "vae"
    orbax_io.save_params(vae, {("x",): np.zeros(1, np.float32)}, {"model": "hunyuan_video_vae"})
    (tmp_path / "file").write_text("a file")
    messages = {
        user: "exists and is not a converted hyv_jax checkpoint (it holds notes.txt, params); it is never replaced",
        ours_plus: "holds a converted hunyuan_video_transformer checkpoint and also notes.txt, which a conversion does not write",
        vae: "holds a converted hunyuan_video_vae checkpoint, not a hunyuan_video_transformer; it is not replaced",
        tmp_path / "file": "exists and is not a folder",
    }
    for out, message in messages.items():
        before = snapshot(out) if out.is_dir() else out.read_bytes()
        code, err = convert(to_jax(tmp_path / "model.safetensors", out, "--overwrite"), capsys)
        assert code == 1 and len(err) == 1 and message in err[0], (out, err)
        assert before == (snapshot(out) if out.is_dir() else out.read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert(to_jax(tmp_path / "model.safetensors", empty), capsys)[0] == 0


def test_to_torch_needs_overwrite_for_an_existing_file(original, tmp_path, capsys):
    out = converted(original, tmp_path)
    target = tmp_path / "back.safetensors"
    target.write_bytes(b"keep me")
    argv = ["to-torch", "--orbax", str(out), "--out", str(target)]
    code, err = convert(argv, capsys)
    assert code == 1 and "back.safetensors exists; pass --overwrite" in err[0] and target.read_bytes() == b"keep me"
    assert convert([*argv, "--overwrite"], capsys)[0] == 0
    back = open_checkpoint(target)
    assert sorted(back.keys()) == sorted(original) and not list(tmp_path.glob(".back*"))


def test_a_config_that_does_not_fit_the_checkpoint_names_the_parameter_and_the_setting(original, tmp_path):
    out = converted(original, tmp_path)
    other = TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "mlp_ratio": 2.0})
    with pytest.raises(ValueError) as info:
        restore_transformer(out, other)
    message = str(info.value)
    assert "does not fit the model: double_blocks/img_mlp/fc1/bias is (2, 256) in the checkpoint, (2, 128) in the model" in message
    assert "differs from the one stored with the checkpoint in mlp_ratio (stored 4.0, config 2.0)" in message
