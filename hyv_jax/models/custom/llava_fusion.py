"""LLaVA text-image fusion as HunyuanCustom runs it: the prompt's single `<image>` token replaced
by the image's projected patch embeddings inside the Llama encoder, and the masks the official
pipeline builds around it.

Inside LLaVA (transformers 4.41.2, which HunyuanCustom pins; its
`_merge_input_ids_with_image_features`, modeling_llava.py:277-353, splices the image in): the
sequence grows by patches - 1, the image positions count as valid, padding stays padding with
its embedding zeroed (the ids equal to the config's `pad_token_id`, :344-348), and the RoPE
positions are `cumsum(mask) - 1` with padded positions at 1 (not their index). The padded
states matter: the pipeline's mask (below) marks some of them valid for the token refiner.

The pipeline's masks (`pipeline_hunyuan_video_custom.encode_prompt` / `__call__`):
- conditional: the tokenizer mask followed by patches - 1 ones, whatever the padding; after the
  template crop the DiT uses only its sum (right), the token refiner its positions (misaligned);
- unconditional: rewritten to ones(sum - (patches - 1)) then zeros when that sum exceeds
  patches - 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.models.custom.clip_vision import ClipVisionConfig, LlavaImageEncoder
from hyv_jax.models.text.llama import LlamaConfig, LlamaModel

IMAGE_TOKEN = "<image>"
# appended to the templated prompt; the CLI's name is "object", the unconditional branch's is the
# tokenizer call's default "person"
SUBJECT_SUFFIX = "\nThe {name} looks like" + IMAGE_TOKEN


def subject_prompt(text: str, name: str) -> str:
    return text + SUBJECT_SUFFIX.format(name=name)


def splice_image(embeds: jax.Array, ids: jax.Array, mask: jax.Array, image: jax.Array, image_token_id: int,
                 pad_token_id: int):
    """embeds (B, L, D) token embeddings, ids/mask (B, L) with exactly one `image_token_id` per row,
    image (B, N, D) -> (x (B, L + N - 1, D), mask (B, L + N - 1), RoPE positions (B, L + N - 1)).
    Tokens equal to `pad_token_id` get zero embeddings (-1: none)."""
    b, length = ids.shape
    n = image.shape[1]
    at = jnp.argmax(ids == image_token_id, axis=1)[:, None]  # (B, 1)
    j = jnp.arange(length + n - 1)[None]  # output positions
    in_image = (j >= at) & (j < at + n)
    text_index = jnp.where(j < at, j, j - n + 1).clip(0, length - 1)
    image_index = (j - at).clip(0, n - 1)
    text_ids = jnp.take_along_axis(ids, text_index, axis=1)
    text = jnp.take_along_axis(embeds, text_index[..., None], axis=1)
    text = jnp.where((text_ids == pad_token_id)[..., None], jnp.zeros((), embeds.dtype), text)
    img = jnp.take_along_axis(image.astype(embeds.dtype), image_index[..., None], axis=1)
    x = jnp.where(in_image[..., None], img, text)
    full_mask = jnp.where(in_image, 1, jnp.take_along_axis(mask, text_index, axis=1)).astype(jnp.int32)
    positions = jnp.where(full_mask > 0, jnp.cumsum(full_mask, axis=1) - 1, 1)
    return x, full_mask, positions


def check_image_tokens(ids: np.ndarray, image_token_id: int) -> None:
    """Each row must hold the `<image>` token exactly once (truncation can cut it off)."""
    counts = (np.asarray(ids) == image_token_id).sum(axis=1)
    if not (counts == 1).all():
        raise ValueError(f"each prompt must contain {IMAGE_TOKEN} exactly once after tokenization, found {counts.tolist()}; "
                         f"the prompt may be too long (the suffix was truncated away): shorten it")


def pipeline_mask(mask: np.ndarray, patches: int) -> np.ndarray:
    """The conditional branch's mask: tokenizer mask (B, L) + patches - 1 ones."""
    mask = np.asarray(mask)
    return np.concatenate([mask, np.ones((mask.shape[0], patches - 1), mask.dtype)], axis=1)


def unconditional_mask(mask: np.ndarray, patches: int) -> np.ndarray:
    """The unconditional branch's cropped pipeline mask as the pipeline rewrites it."""
    mask = np.array(mask)
    for row in mask:
        total = int(row.sum())
        if total > patches - 1:
            row[:] = np.arange(row.shape[0]) < total - (patches - 1)
    return mask


class LlavaTextEncoder(nnx.Module):
    """Llama (up to its output layer) + LLaVA's image encoder: token ids with one `<image>` each,
    the tokenizer mask and CLIP-normalised images -> hidden states (B, L + patches - 1, D)."""

    def __init__(self, llm: LlamaModel, image_encoder: LlavaImageEncoder, image_token_id: int, pad_token_id: int):
        """Built from the two loaded halves (they come from different converters); pad_token_id:
        the LLaVA config's, whose embeddings are zeroed (-1 when the config has none)."""
        (text_dim,), hidden = image_encoder.multi_modal_projector.linear_2.out_shape, llm.config.hidden_size
        if text_dim != hidden:
            raise ValueError(f"the LLaVA projector's width {text_dim} must be the LLM's hidden size {hidden}; "
                             f"set vision.text_dim to {hidden}")
        self.image_token_id, self.pad_token_id = image_token_id, pad_token_id
        self.llm = llm
        self.image_encoder = image_encoder

    @classmethod
    def random(cls, llm: LlamaConfig, vision: ClipVisionConfig, image_token_id: int, pad_token_id: int, *,
               rngs: nnx.Rngs) -> "LlavaTextEncoder":
        return cls(LlamaModel(llm, rngs=rngs), LlavaImageEncoder(vision, rngs=rngs), image_token_id, pad_token_id)

    def __call__(self, ids: jax.Array, mask: jax.Array, images: jax.Array) -> jax.Array:
        """ids, mask (B, L); images (B, S, S, 3) channels-last."""
        image = self.image_encoder(images)
        x, full_mask, positions = splice_image(self.llm.embed_tokens(ids), ids, mask, image, self.image_token_id,
                                               self.pad_token_id)
        return self.llm.from_embeddings(x, full_mask, positions)
