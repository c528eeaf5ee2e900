"""LLaVA's image side (CLIP vision tower at layer -2, CLS dropped, + GELU projector) against
transformers.LlavaForConditionalGeneration.get_image_features at a tiny config, float32."""

import dataclasses

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers import report, torch_random_init

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.llava_vision_checkpoint import read_torch_llava_vision
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.model_state import load_params
from hyv_jax.models.custom.clip_vision import ClipVisionConfig, LlavaImageEncoder

TINY = ClipVisionConfig(image_size=28, patch_size=7, dim=32, heads=2, layers=3, mlp_dim=64, text_dim=48,
                        dtype="float32", param_dtype="float32")


@pytest.fixture(scope="module")
def llava():
    vision = transformers.CLIPVisionConfig(image_size=28, patch_size=7, hidden_size=32, num_attention_heads=2,
                                           num_hidden_layers=3, intermediate_size=64, projection_dim=32)
    text = transformers.LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    num_key_value_heads=2, vocab_size=64)
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=63,
                                      vision_feature_layer=-2, vision_feature_select_strategy="default",
                                      projector_hidden_act="gelu")
    model = transformers.LlavaForConditionalGeneration(config).eval()
    torch_random_init(model, 21)
    return model


def test_image_features_match_transformers(llava):
    state = {k: v.numpy() for k, v in llava.state_dict().items()}
    ours = LlavaImageEncoder(TINY, rngs=nnx.Rngs(0))
    load_params(ours, read_torch_llava_vision(from_arrays(state), TINY, np.float32))
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref = torch.stack(llava.get_image_features(pixel_values=pixels).pooler_output).numpy()
    out = ours(np.moveaxis(pixels.numpy(), 1, -1))
    assert out.shape == (2, 16, 48)  # (28/7)^2 patches, CLS dropped, text width
    assert report("llava image features (tower layer -2 + projector)", out, ref)[1] < 1e-5


def test_unused_and_missing_keys(llava):
    state = {k: v.numpy() for k, v in llava.state_dict().items()}
    # the last tower layer, post-LayerNorm and the language model are set aside by name
    assert any(".encoder.layers.2." in k for k in state) and any(k.startswith("model.language_model.") for k in state)
    del state["model.multi_modal_projector.linear_2.bias"]
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(1\): multi_modal_projector.linear_2.bias"):
        read_torch_llava_vision(from_arrays(state), TINY, np.float32)
    with pytest.raises(ValueError, match="feature_layer"):
        dataclasses.replace(TINY, feature_layer=-5)


def test_hub_folder_names(llava):
    """The released LLaVA folders use the pre-5.0 names: `vision_tower.vision_model.*` at the top
    level, `language_model.model.*`, and may carry a `position_ids` buffer."""
    state = {k.removeprefix("model."): v.numpy() for k, v in llava.state_dict().items()}
    hub = {(f"vision_tower.vision_model.{k.removeprefix('vision_tower.')}" if k.startswith("vision_tower.")
            else k.replace("language_model.", "language_model.model.")): v for k, v in state.items()}
    hub["vision_tower.vision_model.embeddings.position_ids"] = np.arange(17)[None]
    a = read_torch_llava_vision(from_arrays(state), TINY, np.float32)
    b = read_torch_llava_vision(from_arrays(hub), TINY, np.float32)
    assert a.keys() == b.keys() and all(np.array_equal(a[p], b[p]) for p in a)
