"""Prompts + reference images -> PromptEmbeddings as HunyuanCustom's pipeline builds them.

The LLM side is LLaVA: the video template, the suffix "\\nThe {name} looks like<image>", 351
tokens with right padding, the image spliced in (llava_fusion), hidden state 30 of 32, the 95
template positions cropped -> (B, 351 + 575 - 95 = 831, 4096) with the pipeline's mask. CLIP's
pooled output of the plain prompt as in HunyuanVideo. The unconditional branch: the negative
prompt with a white image and the name "person" (the tokenizer call's default upstream; the
pipeline passes no name there), its mask rewritten as the pipeline does.
"""

from collections.abc import Callable, Sequence

import numpy as np

from hyv_jax.models.custom.clip_vision import ClipVisionConfig, LlavaImageEncoder
from hyv_jax.models.custom.llava_fusion import (IMAGE_TOKEN, LlavaTextEncoder, check_image_tokens, pipeline_mask,
                                                subject_prompt, unconditional_mask)
from hyv_jax.models.custom.reference_image import clip_reference, white_clip_reference
from hyv_jax.models.text.templates import template
from hyv_jax.models.text.text_encoder import LazyEncoder, PromptEmbeddings, TextEncoder

SUBJECT_NAME = "object"  # the official CLI's default
UNCONDITIONAL_NAME = "person"


def image_token_id(tokenizer) -> int:
    """The id of LLaVA's `<image>` token, which must be a single token of the tokenizer."""
    ids, plain = tokenizer.token_ids(IMAGE_TOKEN), tokenizer.token_ids("")
    if len(ids) != len(plain) + 1:
        raise ValueError(f"{tokenizer.name} has no {IMAGE_TOKEN} token: HunyuanCustom needs the tokenizer of its fine-tuned "
                         f"llava-llama-3-8b (convert the LLM from that folder)")
    return ids[-1]


class CustomTextEncoder:
    def __init__(self, base: TextEncoder, load_image_encoder: Callable[[], LlavaImageEncoder], vision: ClipVisionConfig):
        self.base, self.vision = base, vision
        self.image_token_id = image_token_id(base.llm_tokenizer)
        self.crop = base.crops["video"]
        self._fused = LazyEncoder(lambda: LlavaTextEncoder(base.llm_model(), load_image_encoder(), self.image_token_id),
                               lambda states: states)

    def _encode(self, prompts: list[str], pixels: np.ndarray, name: str) -> PromptEmbeddings:
        ids, mask = self.base.llm_tokenizer([subject_prompt(template("video").apply(p), name) for p in prompts])
        check_image_tokens(ids, self.image_token_id)
        states = self._fused(ids, mask, pixels)
        full = pipeline_mask(mask, self.vision.patches)
        return PromptEmbeddings(states[:, self.crop:], full[:, self.crop:], self.base.pooled(prompts))

    def encode(self, prompts: Sequence[str], images: Sequence[np.ndarray], *, name: str = SUBJECT_NAME) -> PromptEmbeddings:
        """prompts and one (H, W, 3) uint8 reference image each -> the conditional embeddings."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if len(images) != len(prompts):
            raise ValueError(f"pass one reference image per prompt: {len(prompts)} prompts, {len(images)} images")
        pixels = np.stack([clip_reference(image, self.vision.image_size) for image in images])
        return self._encode(prompts, pixels, name)

    def encode_unconditional(self, negative_prompts: Sequence[str]) -> PromptEmbeddings:
        """The CFG branch: negative prompts with white images, the mask as the pipeline rewrites it."""
        prompts = [negative_prompts] if isinstance(negative_prompts, str) else list(negative_prompts)
        pixels = np.stack([white_clip_reference(self.vision.image_size)] * len(prompts))
        out = self._encode(prompts, pixels, UNCONDITIONAL_NAME)
        return PromptEmbeddings(out.states, unconditional_mask(out.mask, self.vision.patches), out.pooled)

    def release(self) -> None:
        """Frees the device memory of all three encoders; a later encode reloads them."""
        self._fused.release()
        self.base.release()
