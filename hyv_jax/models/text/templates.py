"""HunyuanVideo's prompt templates for the LLM (Llama-3 chat format) and their crop.

The prompt goes into the user turn after a system turn that asks for a detailed description;
the encoder's states of the template tokens before the prompt are cropped away. Upstream types
the crop in (95 for video, 36 for image); here it is computed from the tokenizer: the number of
tokens (BOS included) of the template text before the prompt. For Llama-3 that is BOS +
`<|start_header_id|>system<|end_header_id|>` (3) + "\\n\\n" (1) + the system text + `<|eot_id|>` +
`<|start_header_id|>user<|end_header_id|>` (3) + "\\n\\n" (1): 10 + 85 = 95 (video) and
10 + 26 = 36 (image), one token per word and per punctuation mark of the system text.
"""

import dataclasses

PROMPT_SLOT = "{}"

VIDEO_SYSTEM = (
    "Describe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:"
)
IMAGE_SYSTEM = (
    "Describe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the "
    "objects and background:"
)


def llama3_chat(system: str) -> str:
    return (f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
            f"<|start_header_id|>user<|end_header_id|>\n\n{PROMPT_SLOT}<|eot_id|>")


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    text: str  # with one PROMPT_SLOT where the prompt goes

    def apply(self, prompt: str) -> str:
        # not str.format: braces inside the template or the prompt must stay as they are
        return self.text.replace(PROMPT_SLOT, prompt, 1)

    def crop(self, token_ids) -> int:
        """Number of leading tokens that belong to the template; `token_ids(text)` is the
        tokenizer's encoding with its special tokens (BOS), without padding or truncation."""
        prefix = token_ids(self.text[: self.text.index(PROMPT_SLOT)])
        probe = token_ids(self.apply("a"))
        if probe[: len(prefix)] != prefix:
            raise ValueError("the tokenizer merges the template's text with the prompt, so the template tokens cannot be "
                             "cropped; use the tokenizer the template was written for (Llama-3)")
        return len(prefix)


TEMPLATES = {"video": PromptTemplate(llama3_chat(VIDEO_SYSTEM)), "image": PromptTemplate(llama3_chat(IMAGE_SYSTEM))}


def template(mode: str) -> PromptTemplate:
    if mode not in TEMPLATES:
        raise ValueError(f"unknown prompt mode {mode!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[mode]
