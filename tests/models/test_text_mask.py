"""Text masks the transformer can use: right-padded 0/1 rows with at least one token."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.models.text_mask import check_text_mask


@pytest.mark.parametrize("mask", [
    np.array([[1, 1, 0, 0], [1, 1, 1, 1]]),
    np.array([[True, False, False]]),
    np.array([[1.0, 1.0, 0.0]], np.float32),
    jnp.array([[1, 0]]),
])
def test_right_padded_masks_pass(mask):
    check_text_mask(mask, batch=len(mask))


@pytest.mark.parametrize("mask, batch, message", [
    (np.array([[0, 0, 1, 1]]), None, r"row 0 \(0011\) is not right-padded"),
    (np.array([[1, 1, 0, 0], [1, 0, 1, 0]]), None, r"row 1 \(1010\) is not right-padded"),
    (np.array([[1, 1], [0, 0]]), None, "row 1 has no token"),
    (np.array([[1, 2, 0]]), None, "only 0 and 1, got 2"),
    (np.array([[1.0, 0.5]]), None, "only 0 and 1, got 0.5"),
    (np.zeros((2, 0)), None, "the text is empty"),
    (np.ones((2, 3)), 1, r"text batch \(2 prompts\) must equal the latent batch \(1 videos\)"),
    (np.ones(3), None, r"must be \(batch, tokens\), got shape \(3,\)"),
])
def test_bad_masks_are_named(mask, batch, message):
    with pytest.raises(ValueError, match=message):
        check_text_mask(mask, batch)


def test_under_jit_the_shape_is_still_checked():
    jax.jit(lambda m: check_text_mask(m, batch=2) or m.sum())(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="latent batch"):
        jax.jit(lambda m: check_text_mask(m, batch=1) or m.sum())(jnp.ones((2, 3)))


def test_a_mask_with_ones_after_its_padding_where_that_layout_is_official():
    """HunyuanCustom's conditional mask (llava_fusion.pipeline_mask) keeps ones after the padding."""
    mask = np.array([[1, 1, 0, 1, 1]])
    check_text_mask(mask, right_padded=False)
    with pytest.raises(ValueError, match="not right-padded"):
        check_text_mask(mask)
    with pytest.raises(ValueError, match="row 0 has no token"):
        check_text_mask(np.zeros((1, 5)), right_padded=False)
