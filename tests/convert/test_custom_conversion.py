"""HunyuanCustom checkpoint conversion: the three released layouts (identity, audio, editing),
.pt files under "module", fp8 with a scale map, strict key checks with the flag to change,
exact round trips, and the command line."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import torch
from helpers import fixture_params, load_fixture

from configs import load_config
from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint
from hyv_jax.convert.custom_checkpoint import (
    convert_custom, export_torch_custom, read_converted_custom, read_torch_custom, restore_custom,
)
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.models.custom.transformer import CustomTransformerConfig

ROOT = Path(__file__).parents[2]
TINY = CustomTransformerConfig.from_mapping(load_config("configs/tiny_custom.py").transformer)
FULL = CustomTransformerConfig.from_mapping(load_config("configs/hunyuan_custom.py").transformer)
LAYOUTS = {  # released folder -> (config flags, key prefixes it lacks)
    "hunyuancustom_720P": (dict(audio_condition=False, video_condition=False), ("audio_", "bg_")),
    "hunyuancustom_audio_720P": (dict(audio_condition=True, video_condition=False), ("bg_",)),
    "hunyuancustom_editing_720P": (dict(audio_condition=False, video_condition=True), ("audio_",)),
}


def layout(name):
    flags, absent = LAYOUTS[name]
    state = {k: v for k, v in fixture_params(load_fixture("hycustom_dit_tiny")).items() if not k.startswith(absent)}
    return dataclasses.replace(TINY, **flags), state


def assert_same_state(a: dict, b: dict):
    assert set(a) == set(b), sorted(set(a) ^ set(b))[:10]
    for k in a:
        assert a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_round_trip_is_exact(name):
    config, state = layout(name)
    assert_same_state(export_torch_custom(read_torch_custom(from_arrays(state), config, np.float32), config), state)


def test_released_sizes_match_the_spec():
    """Key shapes of the 13B layouts as the spec lists them (no weights needed)."""
    from hyv_jax.convert.custom_table import custom_rules
    from hyv_jax.convert.custom_checkpoint import abstract_custom
    from hyv_jax.convert.model_state import param_shapes

    config = dataclasses.replace(FULL, audio_condition=True, video_condition=True)
    shapes = param_shapes(abstract_custom(config))
    torch_shapes = {r.source: r.transform.torch_shape([shapes[s.path][1:] if s.layer is not None else shapes[s.path]
                                                       for s in r.targets]) for r in custom_rules(config)}
    assert "guidance_in.mlp.0.weight" not in torch_shapes
    expected = {
        "bg_in.proj.weight": (3072, 32, 1, 2, 2), "bg_proj.weight": (3072, 3072), "audio_proj.proj1.weight": (1024, 19200),
        "audio_proj.proj3.weight": (12288, 1024), "audio_proj.norm.weight": (3072,), "audio_models.5.to_q.weight": (1024, 3072),
        "audio_models.5.to_kv.weight": (2048, 3072), "audio_models.5.to_out.weight": (3072, 1024),
    }
    assert {k: torch_shapes[k] for k in expected} == expected
    audio = sum(np.prod(s) for k, s in torch_shapes.items() if k.startswith("audio_"))
    assert 105e6 < audio < 112e6, audio  # "about 109M parameters"


@pytest.mark.parametrize("name, flag", [("hunyuancustom_audio_720P", "audio_condition=True"),
                                        ("hunyuancustom_editing_720P", "video_condition=True")])
def test_layout_and_config_must_agree(name, flag):
    _, state = layout(name)
    with pytest.raises(CheckpointMismatch, match=f"--config.transformer.{flag}"):
        read_torch_custom(from_arrays(state), dataclasses.replace(TINY, audio_condition=False, video_condition=False))
    identity_config, identity = layout("hunyuancustom_720P")
    flag_name = flag.split("=")[0]
    with pytest.raises(CheckpointMismatch, match=f"--config.transformer.{flag_name}=False"):
        read_torch_custom(from_arrays(identity), dataclasses.replace(identity_config, **{flag_name: True}))
    with pytest.raises(CheckpointMismatch, match="configs/hunyuan_custom.py"):
        read_torch_custom(from_arrays(identity), dataclasses.replace(identity_config, guidance_embed=True))


def test_missing_and_extra_keys_are_named():
    config, state = layout("hunyuancustom_audio_720P")
    broken = {k: v for k, v in state.items() if k != "audio_models.3.to_kv.weight"}
    broken["audio_models.6.to_q.weight"] = state["audio_models.0.to_q.weight"]
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(1\): audio_models.3.to_kv.weight") as e:
        read_torch_custom(from_arrays(broken), config)
    assert "unexpected keys (1): audio_models.6.to_q.weight" in str(e.value)


def fp8_checkpoint(state, tmp_path):
    """The state as the fp8 release stores it: block linears in float8_e4m3fn with one scale
    each in a separate map; everything else (bg_proj, audio modules, norms) unchanged."""
    scales, stored = {}, {}
    for k, v in state.items():
        if k.startswith(("double_blocks.", "single_blocks.")) and k.endswith(".weight") and v.ndim == 2:
            scale = np.float32(np.abs(v).max() / 448.0)
            stored[k] = torch.from_numpy((v / scale).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)).view(torch.float8_e4m3fn)
            scales[k.removesuffix(".weight")] = torch.tensor(scale)
        else:
            stored[k] = torch.from_numpy(v)
    torch.save({"module": stored}, tmp_path / "mp_rank_00_model_states_fp8.pt")
    torch.save(scales, tmp_path / "mp_rank_00_model_states_fp8_map.pt")
    return stored, scales


def test_fp8_with_map_dequantises(tmp_path):
    config, state = layout("hunyuancustom_editing_720P")
    stored, scales = fp8_checkpoint(state, tmp_path)
    source = open_checkpoint(tmp_path / "mp_rank_00_model_states_fp8.pt", tmp_path / "mp_rank_00_model_states_fp8_map.pt")
    back = export_torch_custom(read_torch_custom(source, config, np.float32), config)
    k = "double_blocks.1.img_attn_qkv.weight"
    # upstream's bf16 product w8.to(bf16) * scale.to(bf16), not the float32 one
    scale = scales[k.removesuffix(".weight")].to(torch.bfloat16)
    np.testing.assert_array_equal(back[k], (stored[k].to(torch.bfloat16) * scale).float().numpy())
    np.testing.assert_array_equal(back["bg_proj.weight"], state["bg_proj.weight"])


def test_cli_pt_to_orbax_to_torch(tmp_path):
    config, state = layout("hunyuancustom_audio_720P")
    torch.save({"module": {k: torch.from_numpy(v) for k, v in state.items()}}, tmp_path / "mp_rank_00_model_states.pt")
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "convert_torch_weights.py"), *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True, check=True)
    run("to-jax", "--model", "custom", "--checkpoint", str(tmp_path / "mp_rank_00_model_states.pt"), "--out",
        str(tmp_path / "orbax"), "--dtype", "float32", "--config", "configs/tiny_custom.py",
        "--config.transformer.video_condition=False")
    run("to-torch", "--orbax", str(tmp_path / "orbax"), "--out", str(tmp_path / "back.safetensors"))
    back = open_checkpoint(tmp_path / "back.safetensors")
    assert_same_state({k: back.get(k) for k in back.keys()}, state)
    restored_config, flat = read_converted_custom(tmp_path / "orbax")
    assert restored_config == config
    model = restore_custom(tmp_path / "orbax")
    assert all(np.array_equal(a, flat[p]) for p, a in params_to_numpy(model).items())


def test_convert_function_writes_bf16(tmp_path):
    config, state = layout("hunyuancustom_720P")
    from hyv_jax.convert.safetensors_io import write_safetensors

    write_safetensors(tmp_path / "w.safetensors", state)
    convert_custom(tmp_path / "w.safetensors", config, tmp_path / "orbax")
    _, flat = read_converted_custom(tmp_path / "orbax")
    assert {a.dtype for a in flat.values()} == {np.dtype(ml_dtypes.bfloat16)}
