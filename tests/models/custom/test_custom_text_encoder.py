"""The HunyuanCustom text encoder facade on the tiny config (random weights, shipped tokenizers):
shapes and masks as the official pipeline builds them, and the spliced encoder agreeing with the
plain LLM on the prompt tokens before the image (causal attention, so the image cannot reach them)."""

import json

import numpy as np
import pytest

from configs import tiny_custom
from hyv_jax.loading.models import llava_pad_token_id, load_custom_text_encoder
from hyv_jax.models.custom.llava_fusion import pipeline_mask

PROMPT = "A cat walks on the grass, realistic style."


@pytest.fixture(scope="module")
def encoder():
    return load_custom_text_encoder(tiny_custom.get_config(), seed=3)


def test_conditional_and_unconditional(encoder):
    patches, crop, length = encoder.vision.patches, encoder.crop, encoder.base.llm_tokenizer.max_length
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), np.uint8)
    cond = encoder.encode([PROMPT], [image])
    assert cond.states.shape == (1, length + patches - 1 - crop, 32) and cond.pooled.shape == (1, 16)
    templated = encoder.base.encode([PROMPT], mode="video")
    prompt_tokens = int(templated.mask.sum())
    # the suffix's tokens follow the prompt; the pipeline's mask: tokenizer ones, zeros, then 575 (here 15) ones
    assert cond.mask.shape == cond.states.shape[:2]
    assert (cond.mask[0, -(patches - 1):] == 1).all() and cond.mask[0, 0] == 1
    tokenizer_valid = int(cond.mask.sum()) - (patches - 1)
    assert tokenizer_valid > prompt_tokens
    expected = pipeline_mask(np.array([[1] * (tokenizer_valid + crop) + [0] * (length - tokenizer_valid - crop)]), patches)
    np.testing.assert_array_equal(cond.mask, expected[:, crop:])
    # causal: the prompt's states do not depend on the suffix or the image
    np.testing.assert_allclose(cond.states[0, :prompt_tokens], templated.states[0, :prompt_tokens], rtol=1e-5, atol=1e-5)
    # and the image does reach the positions after it
    other = encoder.encode([PROMPT], [255 - image])
    assert np.abs(other.states[0, tokenizer_valid:] - cond.states[0, tokenizer_valid:]).max() > 1e-3
    np.testing.assert_allclose(other.states[0, :tokenizer_valid - 1], cond.states[0, :tokenizer_valid - 1], rtol=1e-6, atol=1e-6)

    uncond = encoder.encode_unconditional(["low quality"])
    assert uncond.states.shape == cond.states.shape
    valid = int(uncond.mask.sum())
    assert uncond.mask[0, :valid].all() and not uncond.mask[0, valid:].any()  # a valid prefix, the image excluded


def test_bad_inputs(encoder):
    with pytest.raises(ValueError, match="one reference image per prompt"):
        encoder.encode([PROMPT, PROMPT], [np.zeros((8, 8, 3), np.uint8)])
    # the tiny configs cut without a truncation warning; a cut that loses the image token is an error
    with pytest.raises(ValueError, match="exactly once"):
        encoder.encode([" ".join([PROMPT] * 60)], [np.zeros((8, 8, 3), np.uint8)])


def test_padding_token_whose_embedding_is_zeroed(encoder, tmp_path):
    # the tokenizer's pad token when no LLaVA folder names one (random weights)
    assert encoder.pad_token_id == encoder.base.llm_tokenizer.pad_id == encoder.base.llm_tokenizer.token_ids("<pad>")[-1]
    # a LLaVA folder's config.json decides (transformers 4.41.2: -1, nothing zeroed, when unset)
    (tmp_path / "config.json").write_text(json.dumps({"pad_token_id": 128258, "image_token_index": 128257}))
    assert llava_pad_token_id(tmp_path) == 128258
    (tmp_path / "config.json").write_text(json.dumps({"image_token_index": 128257}))
    assert llava_pad_token_id(tmp_path) == -1
    assert llava_pad_token_id(tmp_path / "model.safetensors") is None
