"""CLIP's text model against transformers.CLIPTextModel: pooler_output and last hidden state,
with both of transformers' EOS rules (legacy eos_token_id 2: the largest id; otherwise the
first eos_token_id); float32, random non-zero weights, padded batch."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from helpers import report, torch_random_init
from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.model_state import load_params
from hyv_jax.convert.text_checkpoint import CLIP, read_torch_text
from hyv_jax.models.text.clip_text import CLIPTextConfig, CLIPTextModel

VOCAB, LENGTH = 80, 16


def _ids(eos: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = np.full((3, LENGTH), pad, np.int64)
    mask = np.zeros((3, LENGTH), np.int64)
    for row, n in enumerate((5, 9, LENGTH)):
        ids[row, 0] = VOCAB - 2  # BOS
        ids[row, 1 : n - 1] = rng.integers(3, 60, n - 2)  # below both EOS ids
        ids[row, n - 1] = eos
        mask[row, :n] = 1
    return ids, mask


@pytest.mark.parametrize("eos_token_id", [2, VOCAB - 1 - 10], ids=["legacy_argmax", "eos_token_id"])
def test_pooled_output_matches_transformers(eos_token_id):
    hf_config = transformers.CLIPTextConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=LENGTH, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=VOCAB - 2, eos_token_id=eos_token_id,
    )
    ref = transformers.CLIPTextModel(hf_config).eval()
    torch_random_init(ref, seed=5)
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_layers=2, heads=2,
                            max_positions=LENGTH, eos_token_id=eos_token_id, dtype="float32", param_dtype="float32")
    ours = CLIPTextModel(config, rngs=nnx.Rngs(0))
    load_params(ours, read_torch_text(from_arrays({k: v.numpy() for k, v in ref.state_dict().items()}), CLIP, config, np.float32))
    # legacy: EOS is the largest id and pads repeat it (openai); otherwise a mid-vocabulary EOS
    # and a different pad id, so taking the argmax would pick the wrong token
    ids, mask = _ids(eos=VOCAB - 1, pad=VOCAB - 1) if eos_token_id == 2 else _ids(eos=eos_token_id, pad=0)
    with torch.no_grad():
        out = ref(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    hidden, pooled = ours(ids, mask)
    _, rel = report(f"clip pooler_output ({'legacy' if eos_token_id == 2 else 'eos_token_id'} rule)", pooled, out.pooler_output.numpy())
    assert rel < 2e-5
    _, rel = report("clip last_hidden_state", hidden, out.last_hidden_state.numpy())
    assert rel < 2e-5


def test_too_many_tokens_is_an_error():
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_layers=1, heads=2,
                            max_positions=8, dtype="float32", param_dtype="float32")
    with pytest.raises(ValueError, match="at most 8 tokens"):
        CLIPTextModel(config, rngs=nnx.Rngs(0))(np.zeros((1, 9), np.int32), np.ones((1, 9), np.int32))


def test_fp16_with_outlier_channels_matches_transformers_in_fp16():
    """The official precision (fp16), with embeddings carrying outlier channels at hundreds."""
    hf_config = transformers.CLIPTextConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=LENGTH, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=VOCAB - 2, eos_token_id=2,
    )
    ref = transformers.CLIPTextModel(hf_config).eval()
    torch_random_init(ref, seed=5)
    with torch.no_grad():
        ref.get_input_embeddings().weight[:, 3] = 300.0
        ref.get_input_embeddings().weight[VOCAB - 2, 9] = 1500.0  # BOS
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_layers=2, heads=2,
                            max_positions=LENGTH, dtype="float16", param_dtype="float16")
    ours = CLIPTextModel(config, rngs=nnx.Rngs(0))
    load_params(ours, read_torch_text(from_arrays({k: v.numpy() for k, v in ref.state_dict().items()}), CLIP, config, np.float16))
    ids, mask = _ids(eos=VOCAB - 1, pad=VOCAB - 1)
    with torch.no_grad():
        expected = ref.half()(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).pooler_output.float().numpy()
    hidden, pooled = ours(ids, mask)
    assert np.isfinite(np.asarray(hidden, np.float32)).all()
    _, rel = report("clip fp16 pooler_output with outlier channels vs transformers fp16", np.asarray(pooled, np.float32), expected)
    assert rel < 2e-3
