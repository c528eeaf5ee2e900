"""LLaVA text-image fusion (vision tower + projector + Llama with the `<image>` token expanded)
against transformers.LlavaForConditionalGeneration at a tiny config, float32, random weights:
the hidden state of the encoder's output layer (hidden_states[-3]) at every position, padded
ones included (the pipeline's mask hands some of them to the token refiner)."""

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers import report, torch_random_init

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.llava_vision_checkpoint import read_torch_llava_vision
from hyv_jax.convert.model_state import load_params
from hyv_jax.convert.text_checkpoint import LLM, read_torch_text
from hyv_jax.models.custom.clip_vision import ClipVisionConfig
from hyv_jax.models.custom.llava_fusion import (LlavaTextEncoder, check_image_tokens, pipeline_mask, subject_prompt,
                                                unconditional_mask)
from hyv_jax.models.text.llama import LlamaConfig

IMAGE_ID, PATCHES, PAD = 63, 16, 0
VISION = ClipVisionConfig(image_size=28, patch_size=7, dim=32, heads=2, layers=3, mlp_dim=64, text_dim=48,
                          dtype="float32", param_dtype="float32")
LLM_CONFIG = LlamaConfig(vocab_size=64, hidden_size=48, intermediate_size=64, num_layers=4, heads=4, kv_heads=2, head_dim=12,
                         rope_theta=500000.0, output_layer=2, dtype="float32", param_dtype="float32")


@pytest.fixture(scope="module")
def models():
    vision = transformers.CLIPVisionConfig(image_size=28, patch_size=7, hidden_size=32, num_attention_heads=2,
                                           num_hidden_layers=3, intermediate_size=64, projection_dim=32)
    text = transformers.LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                                    num_key_value_heads=2, head_dim=12, vocab_size=64, rms_norm_eps=1e-5,
                                    rope_parameters={"rope_type": "default", "rope_theta": 500000.0})
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_ID,
                                      vision_feature_layer=-2, vision_feature_select_strategy="default",
                                      projector_hidden_act="gelu")
    ref = transformers.LlavaForConditionalGeneration(config).eval()
    torch_random_init(ref, 8)
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    ours = LlavaTextEncoder.random(LLM_CONFIG, VISION, IMAGE_ID, rngs=nnx.Rngs(0))
    load_params(ours.llm, read_torch_text(from_arrays(state), LLM, LLM_CONFIG, np.float32))
    load_params(ours.image_encoder, read_torch_llava_vision(from_arrays(state), VISION, np.float32))
    return ref, ours


def _tokens():
    """Tokenizer output (B, 12): row 0 as the pipeline makes it (`<image>` last, then padding),
    row 1 with the image inside the text and no padding."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, IMAGE_ID, (2, 12))
    mask = np.ones((2, 12), np.int64)
    ids[0, 8], ids[0, 9:], mask[0, 9:] = IMAGE_ID, PAD, 0
    ids[1, 5] = IMAGE_ID
    return ids, mask


def _transformers_inputs(ids, mask):
    """transformers >= 4.47 wants the image token repeated once per patch; the RoPE positions of
    the releases HunyuanCustom ran (padding at position 1) are passed explicitly."""
    rows, masks = [], []
    for row, m in zip(ids, mask):
        at = int(np.argmax(row == IMAGE_ID))
        rows.append(np.concatenate([row[:at], np.full(PATCHES, IMAGE_ID), row[at + 1:]]))
        masks.append(np.concatenate([m[:at], np.ones(PATCHES, m.dtype), m[at + 1:]]))
    ids, mask = np.stack(rows), np.stack(masks)
    positions = np.where(mask > 0, np.cumsum(mask, axis=1) - 1, 1)
    return torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(positions)


def test_fused_hidden_states_match_transformers(models):
    ref, ours = models
    ids, mask = _tokens()
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    t_ids, t_mask, t_positions = _transformers_inputs(ids, mask)
    with torch.no_grad():
        expected = ref(input_ids=t_ids, attention_mask=t_mask, position_ids=t_positions, pixel_values=pixels,
                       output_hidden_states=True).hidden_states[-3].numpy()
    got = np.asarray(jax.jit(lambda m, i, k, p: m(i, k, p))(ours, ids, mask, np.moveaxis(pixels.numpy(), 1, -1)))
    assert got.shape == (2, 12 + PATCHES - 1, 48)
    _, rel = report("llava fusion hidden_states[-3] (image tokens spliced, all positions)", got, expected)
    assert rel < 2e-5
    valid = t_mask.numpy() > 0
    _, rel_valid = report("llava fusion hidden_states[-3] (valid positions)", got[valid], expected[valid])
    assert rel_valid < 2e-5


def test_pipeline_masks():
    ids, mask = _tokens()
    check_image_tokens(ids, IMAGE_ID)
    with pytest.raises(ValueError, match="exactly once"):
        check_image_tokens(np.where(ids == IMAGE_ID, 1, ids), IMAGE_ID)
    # conditional: the tokenizer mask then patches - 1 ones, positionally misaligned with the states
    full = pipeline_mask(mask[:1], PATCHES)
    assert full.tolist() == [[1] * 9 + [0] * 3 + [1] * 15]
    # unconditional: the valid prefix length sum - (patches - 1) after the crop (here crop 2)
    cropped = full[:, 2:]
    assert unconditional_mask(cropped, PATCHES).tolist() == [[1] * 7 + [0] * 18]
    assert subject_prompt("a cat", "object") == "a cat\nThe object looks like<image>"
