"""Hunyuan-DiT's text encoders against transformers: BertModel (the bilingual CLIP text
encoder) and MT5EncoderModel, float32, random non-zero weights, right-padded batches of two
different lengths; weights go through our converter (transformers' names -> ours)."""

import jax
import numpy as np
import pytest
from helpers import report, torch_random_init
from hunyuan_dit_helpers import model_with

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.hunyuan_dit_text_checkpoint import BERT, MT5
from hyv_jax.convert.text_checkpoint import export_torch_text, read_torch_text
from hyv_jax.models.hunyuan_dit.bert import BertConfig, BertModel
from hyv_jax.models.hunyuan_dit.mt5 import (
    MT5Config,
    MT5Encoder,
    relative_position_buckets,
)

LENGTH = 24
VALID = (9, 24)


def _batch(vocab):
    rng = np.random.default_rng(0)
    ids = rng.integers(3, vocab, (2, LENGTH))
    mask = np.zeros((2, LENGTH), np.int64)
    for row, n in enumerate(VALID):
        mask[row, :n] = 1
        ids[row, n:] = 0
    return ids, mask


def _ours(spec, model_cls, config, torch_model):
    from flax import nnx

    state = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    flat = read_torch_text(from_arrays(state, "transformers"), spec, config, np.float32)
    return model_with(lambda: model_cls(config, rngs=nnx.Rngs(0)), flat), flat


def test_bert_matches_transformers():
    import torch
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel as HFBertModel

    config = BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, heads=4, max_positions=32,
                        dtype="float32", param_dtype="float32")
    ref = HFBertModel(HFBertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   max_position_embeddings=32, layer_norm_eps=1e-12, hidden_act="gelu"),
                      add_pooling_layer=True).eval()
    torch_random_init(ref, 0)
    model, flat = _ours(BERT, BertModel, config, ref)  # the pooler is left out, as upstream loads it
    ids, mask = _batch(64)
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    _, rel = report("bert", jax.jit(lambda m, *a: m(*a))(model, ids, mask), expected)
    assert rel < 1e-5
    exported = export_torch_text(flat, BERT, config)
    assert all(np.array_equal(exported[k], ref.state_dict()[k].numpy()) for k in exported)


def test_mt5_matches_transformers():
    import torch
    from transformers import MT5Config as HFMT5Config
    from transformers import MT5EncoderModel

    config = MT5Config(vocab_size=64, d_model=32, d_kv=8, heads=4, d_ff=48, num_layers=2, relative_attention_num_buckets=8,
                       relative_attention_max_distance=16, dtype="float32", param_dtype="float32")
    ref = MT5EncoderModel(HFMT5Config(vocab_size=64, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2,
                                      relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                      feed_forward_proj="gated-gelu", tie_word_embeddings=False)).eval()
    torch_random_init(ref, 1)
    model, flat = _ours(MT5, MT5Encoder, config, ref)
    ids, mask = _batch(64)
    with torch.no_grad():
        expected = ref(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state.numpy()
    _, rel = report("mt5", jax.jit(lambda m, *a: m(*a))(model, ids, mask), expected)
    assert rel < 1e-5
    exported = export_torch_text(flat, MT5, config)
    assert all(np.array_equal(exported[k], ref.state_dict()[k].numpy()) for k in exported)


@pytest.mark.parametrize("buckets, distance", [(32, 128), (8, 16)])
def test_relative_position_buckets_match_transformers(buckets, distance):
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    n = 300
    relative = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    expected = T5Attention._relative_position_bucket(relative, bidirectional=True, num_buckets=buckets, max_distance=distance)
    assert np.array_equal(relative_position_buckets(n, buckets, distance), expected.numpy())
