"""Builds the small tokenizers of configs/tiny_hunyuan_dit.py: `bert/tokenizer.json` and
`mt5/tokenizer.json`.

Run from the repository root: `python hyv_jax/assets/tiny_hunyuan_dit/build.py`. Deterministic:
the vocabularies are listed, not trained (the tokenizers trainers break ties in hash order).

bert: BERT's pipeline (its normaliser, which spaces out CJK characters, and pre-tokenizer,
WordPiece, [CLS] ... [SEP], [PAD] = 0) as Hunyuan-DiT's bilingual CLIP tokenizer has it; the
vocabulary is every word and character of a few English and Chinese prompts and the official
negative prompt, plus "##" continuations of the characters.
mt5: T5's (Metaspace "▁" words, a Unigram model, "</s>" appended, <pad> = 0, </s> = 1,
<unk> = 2) with the same words ("▁word", preferred) and characters.
"""

import re
import sys
import unicodedata
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository root, for the config's negative prompt
PROMPTS = [
    "a cute cat sitting on a wooden table, realistic photo",
    "An astronaut riding a horse on the moon",
    "a red car on a mountain road at sunset",
    "一只小猫", "一个宇航员在骑马", "青花瓷风格，一只可爱的哈士奇", "渔舟唱晚",
]


def corpus() -> list[str]:
    from hyv_jax.sampling.hunyuan_dit_options import NEGATIVE_PROMPT
    return [*PROMPTS, NEGATIVE_PROMPT]


def words() -> list[str]:
    return sorted({w for text in corpus() for w in re.findall(r"[a-z]+", text.lower())})


def characters() -> list[str]:
    return sorted({c for text in corpus() for c in text.lower() if not c.isspace()}, key=lambda c: (unicodedata.category(c), c))


def build_bert() -> Tokenizer:
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = list(dict.fromkeys([*special, *words(), *characters(), *(f"##{c}" for c in characters())]))
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab.index("[CLS]")), ("[SEP]", vocab.index("[SEP]"))])
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def build_mt5() -> Tokenizer:
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [(f"▁{w}", -2.0) for w in words()] + [(c, -5.0) for c in characters()]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.enable_padding(pad_id=0, pad_token="<pad>")
    return tok


def main():
    from hyv_jax.assets.tokenizer_files import write_tokenizers

    write_tokenizers(HERE, {"bert": build_bert, "mt5": build_mt5})


if __name__ == "__main__":
    main()
