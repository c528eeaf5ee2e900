"""LLaVA text-image fusion (vision tower + projector + Llama with the `<image>` token expanded)
against transformers' LLaVA at a tiny config, float32, random weights: the hidden state of the
encoder's output layer (hidden_states[-3]) at every position, padded ones included (the
pipeline's mask hands some of them to the token refiner).

HunyuanCustom pins transformers 4.41.2, whose LLaVA splices the image in with
`_merge_input_ids_with_image_features` and zeroes the embeddings of padding tokens; transformers
5 dropped that path. The reference here is that function's semantics written out
(`merge_as_transformers_4_41_2`), feeding the installed transformers' vision tower, projector
and Llama."""

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
    ours = LlavaTextEncoder.random(LLM_CONFIG, VISION, IMAGE_ID, PAD, rngs=nnx.Rngs(0))
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


def merge_as_transformers_4_41_2(image_features, embeds, ids, mask, image_id, pad_id):
    """transformers 4.41.2 LlavaForConditionalGeneration._merge_input_ids_with_image_features
    (models/llava/modeling_llava.py:277-353; pad_id is `self.pad_token_id`, :246), without
    labels: text tokens move right by patches - 1 after each image token; the image features
    fill the other slots; the mask is 1 there; positions are cumsum(mask) - 1, padding at 1;
    then the embeddings at the tokens equal to pad_id are set to 0 (:344-348)."""
    b, length = ids.shape
    n, dim = image_features.shape[1:]
    is_image = ids == image_id
    width = int(is_image.sum(-1).max()) * (n - 1) + length
    new_pos = torch.cumsum(is_image * (n - 1) + 1, -1) - 1
    left_padding = not bool((ids[:, -1] == pad_id).sum())
    lead = width - 1 - new_pos[:, -1]
    if left_padding:
        new_pos = new_pos + lead[:, None]
    rows, cols = torch.where(~is_image)
    slots = new_pos[rows, cols]
    out = torch.zeros(b, width, dim, dtype=embeds.dtype)
    out_mask = torch.zeros(b, width, dtype=mask.dtype)
    out[rows, slots], out_mask[rows, slots] = embeds[rows, cols], mask[rows, cols]
    image_slots = torch.ones(b, width, dtype=torch.bool)
    image_slots[rows, slots] = False
    image_slots &= image_slots.cumsum(-1) - 1 >= lead[:, None]
    out[image_slots] = image_features.reshape(-1, dim)
    out_mask |= image_slots
    positions = (out_mask.cumsum(-1) - 1).masked_fill(out_mask == 0, 1)
    pad_rows, pad_cols = torch.where(ids == pad_id)
    out[pad_rows, new_pos[pad_rows, pad_cols]] = 0
    return out, out_mask, positions


def test_fused_hidden_states_match_transformers_4_41_2(models):
    ref, ours = models
    ids, mask = _tokens()
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
    with torch.no_grad():
        features = ref.model.get_image_features(pixel_values=pixels, vision_feature_layer=-2,
                                                vision_feature_select_strategy="default").pooler_output
        features = torch.stack(list(features))
        embeds, full_mask, positions = merge_as_transformers_4_41_2(
            features, ref.get_input_embeddings()(t_ids), t_ids, t_mask, IMAGE_ID, PAD)
        expected = ref.model.language_model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions,
                                            output_hidden_states=True).hidden_states[-3].numpy()
    got = np.asarray(jax.jit(lambda m, i, k, p: m(i, k, p))(ours, ids, mask, np.moveaxis(pixels.numpy(), 1, -1)))
    assert got.shape == (2, 12 + PATCHES - 1, 48)
    _, rel = report("llava fusion hidden_states[-3] (image tokens spliced, all positions)", got, expected)
    assert rel < 2e-5
    valid = full_mask.numpy() > 0
    _, rel_valid = report("llava fusion hidden_states[-3] (valid positions)", got[valid], expected[valid])
    assert rel_valid < 2e-5
    # the zeroed padding changes the padded positions' states (their own input is 0)
    pads = ~valid
    assert pads.sum() == 3
    unzeroed = merge_as_transformers_4_41_2(features, ref.get_input_embeddings()(t_ids), t_ids, t_mask, IMAGE_ID, -1)[0]
    assert not torch.equal(unzeroed, embeds)


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
