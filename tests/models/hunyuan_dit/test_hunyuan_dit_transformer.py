"""The Hunyuan-DiT transformer against diffusers' HunyuanDiT2DModel (float32, random non-zero
weights loaded through our diffusers-layout converter): batch 2, CLIP and mT5 texts padded to
different lengths, a non-square latent; v1.2 and (size/style conditioned) v1.1. Its 2D RoPE
against diffusers and upstream's grid; the released sizes' parameter count."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import report
from hunyuan_dit_helpers import TINY, diffusers_config, diffusers_pair, random_model

from configs import load_config
from hyv_jax.convert.hunyuan_dit_checkpoint import abstract_hunyuan_dit
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.models.hunyuan_dit.rope import crop_region, image_rope
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig


def _inputs(config: HunyuanDiTConfig, height: int, width: int):
    rng = np.random.default_rng(1)
    lengths, lengths_t5 = (5, config.text_len), (3, config.text_len_t5 - 2)
    mask = (np.arange(config.text_len)[None] < np.array(lengths)[:, None]).astype(np.int64)
    mask_t5 = (np.arange(config.text_len_t5)[None] < np.array(lengths_t5)[:, None]).astype(np.int64)
    return dict(
        x=rng.standard_normal((2, config.in_channels, height, width)).astype(np.float32),
        t=np.array([999.0, 321.0], np.float32),
        text=rng.standard_normal((2, config.text_len, config.text_states_dim)).astype(np.float32), mask=mask,
        text_t5=rng.standard_normal((2, config.text_len_t5, config.text_states_dim_t5)).astype(np.float32), mask_t5=mask_t5,
        meta=np.array([[1024, 1024, 768, 512, 0, 0], [512, 640, 1024, 1024, 16, 32]], np.float32) if config.size_style_cond else None,
        style=np.zeros((2,), np.int64) if config.size_style_cond else None,
    )


@pytest.mark.parametrize("size_style_cond", [False, True], ids=["v1.2", "v1.1"])
def test_transformer_matches_diffusers(size_style_cond):
    import torch

    config = dataclasses.replace(TINY, size_style_cond=size_style_cond)
    ref, model = diffusers_pair(config)
    height, width = 8, 12  # a 4 x 6 token grid
    a = _inputs(config, height, width)
    cos, sin = image_rope(config.head_dim, (height // 2, width // 2), config.rope_base_grid)
    with torch.no_grad():
        expected = ref(torch.from_numpy(a["x"]), torch.from_numpy(a["t"]), encoder_hidden_states=torch.from_numpy(a["text"]),
                       text_embedding_mask=torch.from_numpy(a["mask"]), encoder_hidden_states_t5=torch.from_numpy(a["text_t5"]),
                       text_embedding_mask_t5=torch.from_numpy(a["mask_t5"]),
                       image_meta_size=None if a["meta"] is None else torch.from_numpy(a["meta"]),
                       style=None if a["style"] is None else torch.from_numpy(a["style"]),
                       image_rotary_emb=(torch.from_numpy(cos), torch.from_numpy(sin)), return_dict=False)[0].numpy()
    ours = jax.jit(lambda m, *i: m(*i))(model, np.moveaxis(a["x"], 1, -1), a["t"], a["text"], a["mask"], a["text_t5"], a["mask_t5"],
                                        a["meta"], a["style"])
    err, rel = report(f"Hunyuan-DiT {'v1.1' if size_style_cond else 'v1.2'} vs diffusers", np.moveaxis(np.asarray(ours), -1, 1), expected)
    assert rel < 1e-5


@pytest.mark.parametrize("grid", [(4, 4), (32, 32), (64, 64)])
def test_square_rope_equals_diffusers(grid):
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    crops = crop_region(grid, 32)
    cos, sin = get_2d_rotary_pos_embed(88, crops, grid)
    ours = image_rope(88, grid, 32)
    np.testing.assert_allclose(ours[0], cos.numpy(), atol=2e-6)
    np.testing.assert_allclose(ours[1], sin.numpy(), atol=2e-6)


def test_non_square_rope_follows_upstream_grid():
    # 768 x 1280 px: a 48 x 80 grid, resized to 19 x 32 inside the 32 x 32 base and centred at row 6
    assert crop_region((48, 80), 32) == ((6, 0), (25, 32))
    cos, sin = image_rope(8, (48, 80), 32)
    # upstream: np.linspace(start, stop, num, endpoint=False) per axis (posemb_layers.py:get_meshgrid);
    # the first half of the head rotates by x, the second by y; pairs interleaved, theta 10000
    y, x = np.meshgrid(np.linspace(6, 25, 48, endpoint=False), np.linspace(0, 32, 80, endpoint=False), indexing="ij")
    freqs = 1.0 / 10000.0 ** (np.arange(0, 4, 2) / 4)
    angles = np.concatenate([np.repeat(x.reshape(-1, 1) * freqs, 2, axis=1), np.repeat(y.reshape(-1, 1) * freqs, 2, axis=1)], axis=1)
    np.testing.assert_allclose(cos, np.cos(angles), atol=2e-6)
    np.testing.assert_allclose(sin, np.sin(angles), atol=2e-6)


def test_released_parameter_count_equals_diffusers():
    import torch
    from diffusers import HunyuanDiT2DModel

    for path in ("configs/hunyuan_dit.py", "configs/hunyuan_dit_v1_1.py"):
        config = HunyuanDiTConfig.from_mapping(load_config(path).transformer)
        ours = sum(int(np.prod(s)) for s in param_shapes(abstract_hunyuan_dit(config)).values())
        with torch.device("meta"):
            theirs = sum(p.numel() for p in HunyuanDiT2DModel(**diffusers_config(config)).parameters())
        print(f"{path}: {ours:,} parameters (diffusers {theirs:,}; upstream's README: 1.5B)")
        assert ours == theirs
        assert 1.4e9 < ours < 1.6e9


def test_every_parameter_has_logical_axes():
    model = abstract_hunyuan_dit(dataclasses.replace(TINY, size_style_cond=True))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == len(var.shape) and all(axes), (path, axes)
    stacked = nnx.state(model, nnx.Param)["skip_blocks"]["attn1"]["Wqkv"]["kernel"]
    assert stacked.get_metadata()["out_sharding"] == ("layers", "embed", "qkv", "heads", "head_dim")


def test_input_errors():
    model = random_model(lambda: HunyuanDiT(TINY, rngs=nnx.Rngs(0)), 0)
    a = _inputs(TINY, 8, 8)
    args = [np.moveaxis(a["x"], 1, -1), a["t"], a["text"], a["mask"], a["text_t5"], a["mask_t5"]]
    with pytest.raises(ValueError, match="not divisible by the patch"):
        model(np.ones((2, 7, 8, 4)), *args[1:])
    with pytest.raises(ValueError, match=r"text_states_t5 must be \(2, 56, 48\)"):
        model(*args[:4], a["text_t5"][:, :5], a["mask_t5"])
    with pytest.raises(ValueError, match="takes no image_meta_size"):
        model(*args, image_meta_size=np.zeros((2, 6)), style=np.zeros((2,), np.int32))
    with pytest.raises(ValueError, match="must be even"):
        dataclasses.replace(TINY, depth=7)

