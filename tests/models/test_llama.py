"""The Llama text encoder against transformers.LlamaModel: hidden_states[-3] (HunyuanVideo's
layer choice) with a right-padding mask, GQA, RoPE theta and Llama-3 rope scaling; float32,
random non-zero weights."""

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from helpers import report, torch_random_init
from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.model_state import load_params
from hyv_jax.convert.text_checkpoint import LLM, read_torch_text
from hyv_jax.models.text.llama import LlamaConfig, LlamaModel

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8}


def _models(output_layer: int, scaling: dict | None, dtype: str = "float32"):
    rope = {"rope_type": "default", "rope_theta": 500000.0} if scaling is None else {"rope_theta": 500000.0, **scaling}
    hf_config = transformers.LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, max_position_embeddings=64, rope_parameters=rope,
    )
    ref = transformers.LlamaModel(hf_config).eval()
    torch_random_init(ref, seed=3)
    ours_config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=4, heads=4, kv_heads=2,
                              head_dim=8, rope_theta=500000.0, rope_scaling=scaling, rms_norm_eps=1e-5,
                              output_layer=output_layer, dtype=dtype, param_dtype=dtype)
    ours = LlamaModel(ours_config, rngs=nnx.Rngs(0))
    state = {k: v.numpy() for k, v in ref.state_dict().items()}
    load_params(ours, read_torch_text(from_arrays(state), LLM, ours_config, np.dtype(dtype)))
    return ref, ours


def _inputs():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, (2, 20))
    mask = np.ones((2, 20), np.int64)
    mask[1, 11:] = 0  # right padding
    return ids, mask


@pytest.mark.parametrize("scaling", [None, LLAMA3_SCALING], ids=["rope_theta", "llama3_scaling"])
def test_hidden_states_minus_3_match_transformers(scaling):
    ref, ours = _models(output_layer=2, scaling=scaling)
    ids, mask = _inputs()
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       output_hidden_states=True).hidden_states[-3].numpy()
    got = np.asarray(jax.jit(lambda m, i, k: m(i, k))(ours, ids, mask))
    err, rel = report(f"llama hidden_states[-3] ({'rope_theta' if scaling is None else 'llama3 scaling'})", got, expected)
    assert rel < 2e-5
    assert len(ours.layers.self_attn.q_proj.kernel.shape) == 4 and ours.layers.self_attn.q_proj.kernel.shape[0] == 2


def test_last_layer_includes_the_final_norm():
    ref, ours = _models(output_layer=4, scaling=None)
    ids, mask = _inputs()
    with torch.no_grad():
        expected = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    _, rel = report("llama last_hidden_state (final norm)", ours(ids, mask), expected)
    assert rel < 2e-5


def test_config_errors():
    with pytest.raises(ValueError, match="rope_type 'llama3'"):
        LlamaConfig(rope_scaling={"rope_type": "yarn", "factor": 2.0})
    with pytest.raises(ValueError, match="output_layer must be in 1..num_layers"):
        LlamaConfig(output_layer=33)


def test_fp16_with_massive_activations_matches_transformers_in_fp16():
    """The official precision (fp16) with Llama-3-like hidden states: outlier channels at tens on
    every token and the BOS token's at thousands. fp16 logits or norm statistics would overflow
    (x^2 of 3000 is past 65504); ours computes both in float32 and runs on CPU."""
    ref, ours = _models(output_layer=2, scaling=None, dtype="float16")
    ids, mask = _inputs()
    rng = np.random.default_rng(2)
    embeds = rng.standard_normal((2, 20, 32)).astype(np.float32) * 0.5
    embeds[..., [3, 17]] += np.float32(40.0)
    embeds[:, 0, [5, 11, 29]] = np.array([300.0, 1000.0, 3000.0], np.float32)
    with torch.no_grad():
        expected = ref.half()(inputs_embeds=torch.from_numpy(embeds).half(), attention_mask=torch.from_numpy(mask),
                              output_hidden_states=True).hidden_states[-3].float().numpy()
        full = ref.float()(inputs_embeds=torch.from_numpy(embeds), attention_mask=torch.from_numpy(mask),
                           output_hidden_states=True).hidden_states[-3].numpy()
    got = np.asarray(jax.jit(lambda m, x, k: m.from_embeddings(x, k))(ours, embeds.astype(np.float16), mask), np.float32)
    assert np.isfinite(got).all() and np.abs(full).max() > 2900
    _, rel = report("llama fp16 with massive activations vs transformers fp16", got, expected)
    assert rel < 2e-3
    _, rel32 = report("llama fp16 vs transformers float32", got, full)
    assert rel32 < 2e-3
