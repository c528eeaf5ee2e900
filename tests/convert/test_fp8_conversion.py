"""Converted fp8 folders (convert_torch_weights.py --fp8): an fp8 release with its scale map
keeps its fp8 values and scales bit for bit; a bf16 checkpoint is quantised as upstream does,
exactly as loading quantises; such folders load in fp8 or dequantised as upstream, and the
plain restore refuses them with what to do."""

import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import fixture_params, load_fixture

from configs import load_config
from hyv_jax.convert.fp8_weights import BLOCK_STACKS
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import convert_transformer, export_torch_transformer, restore_transformer
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import load_transformer
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.nn.fp8 import Fp8Weight, dequantize_fp8

TINY = TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "dtype": "bfloat16", "param_dtype": "bfloat16"})
BF16 = ml_dtypes.bfloat16


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The tiny fixture as the fp8 release stores it (block Linear weights in float8_e4m3fn,
    float32 scales in the map, the rest bf16) and as a bf16 checkpoint."""
    folder = tmp_path_factory.mktemp("release")
    original = fixture_params(load_fixture("hyvideo_t2v_dit_tiny"))
    stored, scales = {}, {}
    for k, v in original.items():
        module = k.removesuffix(".weight")
        if k.endswith(".weight") and v.ndim == 2 and any(b in k for b in BLOCK_STACKS):
            scales[module] = torch.tensor(np.float32(np.abs(v).max() / 448.0 * 1.01))  # a scale bf16 does not hold
            stored[k] = torch.from_numpy(v / scales[module].numpy()).to(torch.float8_e4m3fn)
        else:
            stored[k] = torch.from_numpy(v.copy()).to(torch.bfloat16)
    torch.save({"module": stored}, folder / "mp_rank_00_model_states_fp8.pt")
    torch.save(scales, folder / "mp_rank_00_model_states_fp8_map.pt")
    torch.save({"module": {k: torch.from_numpy(v.copy()).to(torch.bfloat16) for k, v in original.items()}},
               folder / "mp_rank_00_model_states.pt")
    return folder, stored, scales


def split_params(model) -> tuple[dict, dict]:
    """({path: Fp8Weight}, {path: numpy array}) of a model's parameters."""
    values = {tuple(str(k) for k in path): var.get_value() for path, var in nnx.to_flat_state(nnx.state(model))}
    return ({p: v for p, v in values.items() if isinstance(v, Fp8Weight)},
            {p: np.asarray(v) for p, v in values.items() if not isinstance(v, Fp8Weight)})


def test_the_fp8_release_keeps_its_values_and_scales(release, tmp_path):
    folder, stored, scales = release
    convert_transformer(folder / "mp_rank_00_model_states_fp8.pt", TINY, tmp_path / "fp8", fp8_map=folder / "mp_rank_00_model_states_fp8_map.pt",
                        fp8=True)
    quantised, others = split_params(load_transformer(TINY, tmp_path / "fp8", memory=MemoryMode(fp8=True)))
    assert len(quantised) == 15
    # back to upstream's names: the fp8 bits and the map's float32 scales, unchanged
    w8 = export_torch_transformer({p: np.asarray(v.w8) for p, v in quantised.items()} | others, TINY)
    for name, tensor in stored.items():
        if tensor.dtype == torch.float8_e4m3fn:
            np.testing.assert_array_equal(w8[name].view(np.uint8), tensor.view(torch.uint8).numpy(), err_msg=name)
    qkv = quantised[("double_blocks", "img_attn_qkv", "kernel")]
    np.testing.assert_array_equal(np.asarray(qkv.scale), [scales[f"double_blocks.{i}.img_attn_qkv"].item() for i in range(2)])
    # without --use-fp8 the folder loads dequantised in the model dtype, as upstream computes it
    plain = params_to_numpy(load_transformer(TINY, tmp_path / "fp8"))
    expected = dequantize_fp8(np.asarray(qkv.w8), np.asarray(qkv.scale)[:, None, None, None, None], BF16)
    np.testing.assert_array_equal(plain[("double_blocks", "img_attn_qkv", "kernel")].view(np.uint16), expected.view(np.uint16))
    with pytest.raises(ValueError, match="stores fp8 weights"):
        restore_transformer(tmp_path / "fp8")


def test_a_bf16_checkpoint_is_quantised_as_loading_quantises(release, tmp_path):
    folder, _, _ = release
    convert_transformer(folder / "mp_rank_00_model_states.pt", TINY, tmp_path / "fp8", fp8=True)
    converted = split_params(load_transformer(TINY, tmp_path / "fp8", memory=MemoryMode(fp8=True)))[0]
    convert_transformer(folder / "mp_rank_00_model_states.pt", TINY, tmp_path / "bf16")
    on_load = split_params(load_transformer(TINY, tmp_path / "bf16", memory=MemoryMode(fp8=True)))[0]
    assert converted.keys() == on_load.keys()
    for path in converted:
        np.testing.assert_array_equal(np.asarray(converted[path].w8).view(np.uint8), np.asarray(on_load[path].w8).view(np.uint8))
        np.testing.assert_array_equal(np.asarray(converted[path].scale), np.asarray(on_load[path].scale))
