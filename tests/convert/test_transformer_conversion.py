"""Transformer checkpoint conversion: formats, strict key checks, exact round trips, and
agreement with diffusers' own original -> diffusers converter."""

import json
import subprocess
import sys
import types
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from helpers import fixture_params, load_fixture

from configs import load_config
from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint
from hyv_jax.convert.mapping import CheckpointMismatch, jax_to_torch
from hyv_jax.convert.model_state import param_shapes, params_to_numpy
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.transformer_checkpoint import (
    abstract_transformer, convert_transformer, export_torch_transformer, read_torch_transformer, restore_transformer,
)
from hyv_jax.convert.transformer_table import diffusers_regroups, transformer_rules
from hyv_jax.models.transformer import TransformerConfig

ROOT = Path(__file__).parents[2]
TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)
FULL = TransformerConfig.from_mapping(load_config("configs/hunyuan_video_t2v.py").transformer)


@pytest.fixture(scope="module")
def original():
    return fixture_params(load_fixture("hyvideo_t2v_dit_tiny"))


def assert_same_state(a: dict, b: dict):
    assert set(a) == set(b), (sorted(set(a) ^ set(b)))[:10]
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_original_round_trip_is_exact(original):
    flat = read_torch_transformer(from_arrays(original), TINY, np.float32)
    assert_same_state(export_torch_transformer(flat, TINY, "original"), original)


def test_diffusers_round_trip_is_exact(original):
    flat = read_torch_transformer(from_arrays(original), TINY, np.float32)
    diffusers_state = export_torch_transformer(flat, TINY, "diffusers")
    flat_again = read_torch_transformer(from_arrays(diffusers_state), TINY, np.float32)
    assert all(np.array_equal(flat[p], flat_again[p]) for p in flat)
    assert_same_state(export_torch_transformer(flat_again, TINY, "diffusers"), diffusers_state)


def diffusers_converter_at_width(width: int):
    """diffusers' converter with its hard-coded single-block width 3072 replaced by `width`."""
    from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers as fn

    def patch(code):
        consts = tuple(patch(c) if isinstance(c, types.CodeType) else (width if c == 3072 else c) for c in code.co_consts)
        return code.replace(co_consts=consts)

    return types.FunctionType(patch(fn.__code__), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def test_diffusers_names_and_values_agree_with_diffusers_converter(original):
    from diffusers.loaders.single_file_utils import convert_hunyuan_video_transformer_to_diffusers

    # at tiny width, values (diffusers' linear1 split done at the right width)
    theirs = diffusers_converter_at_width(TINY.hidden_size)({k: torch.from_numpy(v.copy()) for k, v in original.items()})
    flat = read_torch_transformer(from_arrays(original), TINY, np.float32)
    ours = export_torch_transformer(flat, TINY, "diffusers")
    assert_same_state(ours, {k: v.numpy() for k, v in theirs.items()})

    # at the released width, every name and shape (meta tensors: no memory)
    shapes = param_shapes(abstract_transformer(FULL))
    rules = transformer_rules(FULL)
    torch_shapes = {r.source: r.transform.torch_shape([shapes[s.path][1:] if s.layer is not None else shapes[s.path] for s in r.targets]) for r in rules}
    theirs = convert_hunyuan_video_transformer_to_diffusers({k: torch.empty(s, device="meta") for k, s in torch_shapes.items()})
    ours = {}
    for g in diffusers_regroups(FULL):
        sizes = g.sizes if g.sizes and len(g.pieces) > 1 else (torch_shapes[g.name][0],)
        for name, rows in zip(g.pieces, sizes):
            ours[name] = (rows, *torch_shapes[g.name][1:])
    assert {k: tuple(v.shape) for k, v in theirs.items()} == ours


def test_file_formats_and_wrappers(original, tmp_path):
    expected = read_torch_transformer(from_arrays(original), TINY, np.float32)
    tensors = {k: torch.from_numpy(v.copy()) for k, v in original.items()}
    torch.save({"module": tensors}, tmp_path / "module.pt")
    torch.save({"ema": tensors}, tmp_path / "ema.pt")
    torch.save(tensors, tmp_path / "bare.pt")
    write_safetensors(tmp_path / "single.safetensors", original)
    diffusers_state = export_torch_transformer(expected, TINY, "diffusers")
    names = sorted(diffusers_state)
    shards = tmp_path / "sharded"
    shards.mkdir()
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        write_safetensors(shards / f"model-{i}.safetensors", {n: diffusers_state[n] for n in part})
        weight_map.update({n: f"model-{i}.safetensors" for n in part})
    (shards / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    for path in ["module.pt", "ema.pt", "bare.pt", "single.safetensors", "sharded", "sharded/model.safetensors.index.json"]:
        flat = read_torch_transformer(open_checkpoint(tmp_path / path), TINY, np.float32)
        assert all(np.array_equal(flat[p], expected[p]) for p in expected), path


def test_bf16_checkpoint_reads_exactly(original, tmp_path):
    bf16 = {k: torch.from_numpy(v.copy()).to(torch.bfloat16) for k, v in original.items()}
    torch.save({"module": bf16}, tmp_path / "bf16.pt")
    flat = read_torch_transformer(open_checkpoint(tmp_path / "bf16.pt"), TINY, ml_dtypes.bfloat16)
    back = export_torch_transformer(flat, TINY)
    for k, v in bf16.items():
        np.testing.assert_array_equal(back[k].view(np.uint16), v.view(torch.int16).numpy().view(np.uint16), err_msg=k)


def test_fp8_checkpoint_with_scale_map(original, tmp_path):
    scales, fp8, expected = {}, {}, dict(original)
    for k, v in original.items():
        module = k.removesuffix(".weight")
        if k.endswith(".weight") and v.ndim == 2 and ("double_blocks" in k or "single_blocks" in k):
            scale = float(np.abs(v).max() / 448.0)
            w8 = torch.from_numpy(v / scale).to(torch.float8_e4m3fn)
            fp8[k], scales[module] = w8, torch.tensor(scale)
            expected[k] = (w8.to(torch.bfloat16) * torch.tensor(scale).to(torch.bfloat16)).float().numpy()  # as upstream
        else:
            fp8[k] = torch.from_numpy(v.copy())
    torch.save({"module": fp8}, tmp_path / "fp8.pt")
    torch.save(scales, tmp_path / "fp8_map.pt")
    flat = read_torch_transformer(open_checkpoint(tmp_path / "fp8.pt", tmp_path / "fp8_map.pt"), TINY, np.float32)
    assert_same_state(export_torch_transformer(flat, TINY), expected)
    del scales[next(iter(scales))]
    torch.save(scales, tmp_path / "partial_map.pt")
    with pytest.raises(ValueError, match="fp8 map has no scale"):
        read_torch_transformer(open_checkpoint(tmp_path / "fp8.pt", tmp_path / "partial_map.pt"), TINY, np.float32)


def test_mismatched_checkpoints_name_the_keys(original):
    broken = dict(original)
    del broken["double_blocks.1.img_attn_proj.weight"]
    broken["double_blocks.0.extra.weight"] = np.zeros(3, np.float32)
    broken["single_blocks.0.q_norm.weight"] = np.zeros(31, np.float32)
    with pytest.raises(CheckpointMismatch) as info:
        read_torch_transformer(from_arrays(broken), TINY, np.float32)
    message = str(info.value)
    assert "missing keys (1): double_blocks.1.img_attn_proj.weight" in message
    assert "unexpected keys (1): double_blocks.0.extra.weight" in message
    assert "wrong shapes (1): single_blocks.0.q_norm.weight (31,) (expected (32,))" in message
    with pytest.raises(CheckpointMismatch, match=r"wrong shapes \(119\): double_blocks.0.img_attn_k_norm.weight \(32,\) \(expected \(16,\)\)"):
        read_torch_transformer(from_arrays(original), TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "hidden_size": 32, "rope_axes_dims": (4, 6, 6)}), np.float32)
    with pytest.raises(ValueError, match="cannot tell the checkpoint layout"):
        read_torch_transformer(from_arrays({"encoder.conv_in.weight": np.zeros(1)}), TINY, np.float32)


def test_export_checks_every_parameter(original):
    flat = read_torch_transformer(from_arrays(original), TINY, np.float32)
    del flat[("final_layer", "linear", "bias")]
    with pytest.raises(CheckpointMismatch, match="final_layer.linear.bias"):
        jax_to_torch(flat, transformer_rules(TINY))


def test_orbax_checkpoint_restores_the_model(original, tmp_path):
    write_safetensors(tmp_path / "model.safetensors", original)
    convert_transformer(tmp_path / "model.safetensors", TINY, tmp_path / "orbax", dtype=np.float32)
    restored = restore_transformer(tmp_path / "orbax")
    expected = read_torch_transformer(from_arrays(original), TINY, np.float32)
    got = params_to_numpy(restored)
    assert all(np.array_equal(got[p], expected[p]) for p in expected)


def test_command_line_round_trip(original, tmp_path):
    torch.save({"module": {k: torch.from_numpy(v.copy()) for k, v in original.items()}}, tmp_path / "mp_rank_00_model_states.pt")
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "convert_torch_weights.py"), *a], cwd=ROOT, check=True, capture_output=True, text=True)  # noqa: E731
    run("to-jax", "--checkpoint", str(tmp_path / "mp_rank_00_model_states.pt"), "--out", str(tmp_path / "orbax"),
        "--dtype", "float32", "--config", "configs/tiny.py")
    run("to-torch", "--orbax", str(tmp_path / "orbax"), "--layout", "original", "--out", str(tmp_path / "back.safetensors"))
    back = open_checkpoint(tmp_path / "back.safetensors")
    assert_same_state({k: np.array(back.get(k)) for k in back.keys()}, original)
