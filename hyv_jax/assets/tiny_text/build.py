"""Builds the small tokenizers of the tiny config: `llm/tokenizer.json` and `clip/tokenizer.json`.

Run from the repository root: `python hyv_jax/assets/tiny_text/build.py`. Deterministic.

llm: Llama-3's pipeline (its pre-tokenizer regex, byte-level BPE, BOS by the post-processor,
the chat special tokens), trained on the prompt templates plus a few prompts until every word
of the templates is one token, as it is in Llama-3's vocabulary; so the template crops come
out as with the real tokenizer (95 video, 36 image). clip: CLIP's pipeline (lower-case,
its split regex, byte-level BPE, <|startoftext|> ... <|endoftext|>; no "</w>" word ends,
whose alphabet makes the trainer's output order vary from run to run), with
<|endoftext|> the last id as in openai's vocabulary (transformers' legacy pooling takes the
argmax id) and also the pad token.
"""

import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for the templates
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
CLIP_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"
LLM_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<pad>",
               "<image>"]  # LLaVA's image placeholder (HunyuanCustom)
PROMPTS = [
    "A cat walks on the grass, realistic style.",
    "A red car drives along a winding mountain road at sunset.",
    "Two people dance in the rain under a street light.",
    "system\n\n", "user\n\n", "assistant\n\n",  # the chat headers' words and their "\n\n" token
]


def corpus() -> list[str]:
    from hyv_jax.models.text.templates import IMAGE_SYSTEM, VIDEO_SYSTEM
    return [VIDEO_SYSTEM, IMAGE_SYSTEM, *PROMPTS]


def build_llm() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # a vocabulary large enough that merging only stops once every word is whole
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens(LLM_SPECIAL)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tok.enable_padding(pad_id=tok.token_to_id("<pad>"), pad_token="<pad>")
    return tok


def build_clip() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    assert eos == tok.get_vocab_size() - 1
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)])
    tok.enable_padding(pad_id=eos, pad_token="<|endoftext|>")
    return tok


def main():
    from hyv_jax.assets.tokenizer_files import write_tokenizers

    write_tokenizers(HERE, {"llm": build_llm, "clip": build_clip})


if __name__ == "__main__":
    main()
