"""VAE checkpoint conversion: strict key checks, exact round trips, the file formats and
wrappers upstream and diffusers ship, and Orbax save/restore."""

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from hyv_jax.convert.checkpoint_source import from_arrays, open_checkpoint
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.model_state import param_shapes, params_to_numpy
from hyv_jax.convert.vae_checkpoint import abstract_vae, convert_vae, export_torch_vae, read_torch_vae, restore_vae
from hyv_jax.convert.vae_table import vae_rules
from hyv_jax.models.vae import VAEConfig

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hyvideo_vae_tiny.safetensors"
TINY = VAEConfig(
    block_out_channels=(8, 16, 16, 16), latent_channels=4, norm_groups=4,
    tile_sample_size=32, tile_sample_frames=16, dtype="float32", param_dtype="float32",
)


@pytest.fixture(scope="module")
def state() -> dict:
    """The official module's state dict at the tiny size (244 tensors, random non-zero)."""
    return {k.removeprefix("param."): v for k, v in load_file(FIXTURE).items() if k.startswith("param.")}


def test_table_covers_model_and_checkpoint(state):
    rules = vae_rules(TINY)
    assert {r.source for r in rules} == set(state)
    assert {s.path for r in rules for s in r.targets} == set(param_shapes(abstract_vae(TINY)))


def test_round_trip_is_exact(state):
    flat = read_torch_vae(from_arrays(state), TINY)
    assert set(flat) == set(param_shapes(abstract_vae(TINY)))
    kernel = flat[("encoder", "down_blocks", "1", "resnets", "0", "conv_shortcut", "conv", "kernel")]
    torch_weight = state["encoder.down_blocks.1.resnets.0.conv_shortcut.conv.weight"]  # (O, I, kt, kh, kw)
    np.testing.assert_array_equal(kernel, torch_weight.transpose(2, 3, 4, 1, 0))
    back = export_torch_vae(flat, TINY)
    assert list(back) == [r.source for r in vae_rules(TINY)]
    for k, v in state.items():
        assert back[k].shape == v.shape and back[k].dtype == v.dtype, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_missing_extra_and_misshaped_keys(state):
    broken = dict(state)
    del broken["decoder.mid_block.attentions.0.to_q.weight"]
    broken["encoder.down_blocks.0.resnets.0.conv9.conv.weight"] = np.zeros(3, np.float32)
    broken["quant_conv.weight"] = np.zeros((8, 8, 3, 1, 1), np.float32)
    with pytest.raises(CheckpointMismatch) as err:
        read_torch_vae(from_arrays(broken, "broken.safetensors"), TINY)
    message = str(err.value)
    assert "broken.safetensors does not match the VAE config" in message
    assert "missing keys (1): decoder.mid_block.attentions.0.to_q.weight" in message
    assert "unexpected keys (1): encoder.down_blocks.0.resnets.0.conv9.conv.weight" in message
    assert "quant_conv.weight (8, 8, 3, 1, 1) (expected (8, 8, 1, 1, 1))" in message


def test_wrong_config_is_reported(state):
    with pytest.raises(CheckpointMismatch, match="wrong shapes"):
        read_torch_vae(from_arrays(state), VAEConfig(block_out_channels=(8, 16, 16, 32), latent_channels=4, norm_groups=4))


def test_pt_with_state_dict_wrapper_and_prefix_to_orbax_and_back(state, tmp_path):
    import torch
    path = tmp_path / "pytorch_model.pt"
    torch.save({"state_dict": {f"vae.{k}": torch.from_numpy(v.copy()) for k, v in state.items()}}, path)
    convert_vae(path, TINY, tmp_path / "orbax")
    model = restore_vae(tmp_path / "orbax")  # config from the checkpoint's record
    assert model.config == TINY
    back = export_torch_vae(params_to_numpy(model), TINY)
    for k, v in state.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_diffusers_safetensors(state, tmp_path):
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(state, path)
    flat = read_torch_vae(open_checkpoint(path), TINY)
    for k, v in export_torch_vae(flat, TINY).items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)


def test_restore_rejects_other_models(tmp_path):
    from hyv_jax.convert.orbax_io import save_params

    save_params(tmp_path, {("x",): np.zeros(1, np.float32)}, {"model": "hunyuan_video_transformer"})
    with pytest.raises(ValueError, match="not a hunyuan_video_vae"):
        restore_vae(tmp_path)


def test_command_line_round_trip(state, tmp_path):
    import subprocess
    import sys

    import torch

    root = Path(__file__).parents[2]
    torch.save({"state_dict": {f"vae.{k}": torch.from_numpy(v.copy()) for k, v in state.items()}}, tmp_path / "pytorch_model.pt")

    def run(*args):
        return subprocess.run([sys.executable, str(root / "convert_torch_weights.py"), *args], cwd=root, capture_output=True, text=True)

    done = run("to-jax", "--model", "vae", "--checkpoint", str(tmp_path / "pytorch_model.pt"), "--out", str(tmp_path / "orbax"),
               "--config", "configs/tiny.py")
    assert done.returncode == 0, done.stderr
    assert restore_vae(tmp_path / "orbax").config.param_dtype == "float32"
    refused = run("to-torch", "--orbax", str(tmp_path / "orbax"), "--layout", "diffusers", "--out", str(tmp_path / "x.safetensors"))
    assert refused.returncode != 0 and "exports in the layouts" in refused.stderr
    done = run("to-torch", "--orbax", str(tmp_path / "orbax"), "--out", str(tmp_path / "back.safetensors"))
    assert done.returncode == 0, done.stderr
    back = load_file(tmp_path / "back.safetensors")
    assert set(back) == set(state)
    for k, v in state.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
