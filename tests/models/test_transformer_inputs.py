"""The transformer refuses inputs it would turn into NaN or silently wrong output: an all-zero
text mask row (NaN before), a left-padded mask (the padding was attended), a text batch unlike
the latent batch (a broadcasting error before), empty text and zero frames (IndexError /
ZeroDivisionError before). Every case fails in the input checks, before any compute."""

import numpy as np
import pytest
from flax import nnx

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig

CONFIG = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)


@pytest.fixture(scope="module")
def model():
    return nnx.eval_shape(lambda: HunyuanVideoTransformer(CONFIG, rngs=nnx.Rngs(0)))  # the checks need no weights


def inputs(batch=1, frames=1, tokens=4, text_batch=None, mask=None):
    text_batch = batch if text_batch is None else text_batch
    return (np.zeros((batch, frames, 4, 4, CONFIG.in_channels), np.float32), np.full((batch,), 500.0, np.float32),
            np.ones((text_batch, tokens, CONFIG.text_states_dim), np.float32),
            np.ones((text_batch, tokens), np.int32) if mask is None else np.asarray(mask),
            np.ones((batch, CONFIG.text_states_dim_2), np.float32))


@pytest.mark.parametrize("kw, message", [
    (dict(mask=[[0, 0, 0, 0]]), "text mask row 0 has no token"),
    (dict(mask=[[0, 1, 1, 1]]), r"text mask row 0 \(0111\) is not right-padded"),
    (dict(text_batch=2), r"text batch \(2 prompts\) must equal the latent batch \(1 videos\)"),
    (dict(tokens=0), "the text is empty"),
    (dict(frames=0), r"latents \(B, T, H, W\) = \(1, 0, 4, 4\) are empty"),
])
def test_bad_inputs_are_refused_before_compute(model, kw, message):
    with pytest.raises(ValueError, match=message):
        model.prepare(*inputs(**kw), guidance=np.array([6000.0], np.float32))
