"""The pipeline end to end at the tiny config with random weights and a stand-in text encoder
(the TextEncoder contract: encode(prompts, mode) -> states/mask/pooled, release()): one trace
for all steps, seeds, CFG batching, prompt modes, frame format."""

import dataclasses
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import load_config
from hyv_jax.models.text.text_encoder import PromptEmbeddings
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.models.vae import VAEConfig
from hyv_jax.sampling.denoise import FullModel, NonFiniteLatents, denoise
from hyv_jax.sampling.first_block_cache import FirstBlockCache
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.loading.models import random_transformer, random_vae
from hyv_jax.sampling.pipeline import TextToVideoPipeline
from hyv_jax.sampling.schedule import FlowSchedule

CONFIG = load_config("configs/tiny.py")
OPTIONS = SamplingOptions(height=32, width=32, frames=5, steps=3)


class StandInTextEncoder:
    """Deterministic embeddings per prompt text; records calls."""

    length, dim, pooled_dim = 8, 32, 16

    def __init__(self):
        self.calls, self.releases = [], 0

    def encode(self, prompts, *, mode="video"):
        self.calls.append((list(prompts), mode))
        rngs = [np.random.default_rng(zlib.crc32(f"{mode}:{p}".encode())) for p in prompts]
        valid = np.array([len(p) % self.length + 1 for p in prompts])
        return PromptEmbeddings(
            np.stack([r.standard_normal((self.length, self.dim), dtype=np.float32) for r in rngs]),
            (np.arange(self.length)[None] < valid[:, None]).astype(np.int32),
            np.stack([r.standard_normal(self.pooled_dim, dtype=np.float32) for r in rngs]),
        )

    def release(self):
        self.releases += 1


@pytest.fixture(scope="module")
def shared_pipeline():
    # one pipeline (one compiled step per input shape) for the module
    return TextToVideoPipeline(None, random_transformer(TransformerConfig.from_mapping(CONFIG.transformer), seed=1),
                               random_vae(VAEConfig.from_mapping(CONFIG.vae), seed=2))


@pytest.fixture
def pipeline(shared_pipeline):
    shared_pipeline.text_encoder = StandInTextEncoder()
    return shared_pipeline


def test_one_trace_for_all_steps_and_step_counts(pipeline):
    step = pipeline.compiled_step(FullModel())
    before = step.traces
    first = pipeline(" a cat", OPTIONS, progress=False)
    pipeline(" a cat", dataclasses.replace(OPTIONS, steps=5, flow_shift=3.0, seed=9), progress=False)
    assert step.traces - before <= 1  # 8 steps, at most one trace (none if this shape ran before)
    assert step.traces >= 1 and first.full_steps == 3
    assert first.frames.dtype == np.uint8 and first.frames.shape == (1, 5, 32, 32, 3)
    assert first.latents.shape == (1, 2, 4, 4, 4)


def test_same_seed_same_video_different_seed_different(pipeline):
    a = pipeline("a red fox", OPTIONS, progress=False)
    b = pipeline("a red fox", OPTIONS, progress=False)
    c = pipeline("a red fox", dataclasses.replace(OPTIONS, seed=1), progress=False)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert not np.array_equal(a.latents, c.latents) and not np.array_equal(a.frames, c.frames)
    assert a.seeds == [0] and c.seeds == [1]


def test_video_i_uses_seed_plus_i_whatever_the_batch(pipeline):
    two = pipeline("a boat", dataclasses.replace(OPTIONS, seed=5, num_videos=2), progress=False)
    one = pipeline("a boat", dataclasses.replace(OPTIONS, seed=6), progress=False)
    assert two.seeds == [5, 6]
    np.testing.assert_allclose(two.latents[1], one.latents[0], rtol=0, atol=1e-5)
    assert not np.allclose(two.latents[0], two.latents[1])


def test_noise_dtypes(pipeline):
    half, seeds = pipeline.noise(OPTIONS)
    full, _ = pipeline.noise(dataclasses.replace(OPTIONS, noise_dtype="float32"))
    assert half.dtype == full.dtype == np.float32 and seeds == [0]
    np.testing.assert_array_equal(np.asarray(half), np.asarray(half).astype(np.float16).astype(np.float32))
    assert abs(float(np.std(full)) - 1) < 0.2


def test_cfg_batches_negative_then_positive_and_releases_the_encoder(pipeline):
    options = dataclasses.replace(OPTIONS, cfg_scale=4.0, num_videos=2, negative_prompt="blurry")
    text = pipeline.encode_prompt("a dog", options)
    encoder = pipeline.text_encoder
    assert encoder.calls == [(["blurry", "a dog"], "video")] and encoder.releases == 1
    single = encoder.encode(["blurry", "a dog"])
    np.testing.assert_array_equal(text.states, single.states[[0, 0, 1, 1]])
    np.testing.assert_array_equal(text.mask, single.mask[[0, 0, 1, 1]])
    videos = pipeline("a dog", options, progress=False)
    assert videos.frames.shape == (2, 5, 32, 32, 3)
    # true CFG changes the result
    plain = pipeline("a dog", dataclasses.replace(options, cfg_scale=1.0), progress=False)
    assert not np.allclose(videos.latents, plain.latents)


def test_prompts_stripped_and_an_empty_negative_is_the_default(pipeline):
    """hyvideo/inference.py:595-606."""
    from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT

    pipeline.encode_prompt("  a dog \n", dataclasses.replace(OPTIONS, cfg_scale=4.0, negative_prompt=""))
    assert pipeline.text_encoder.calls[-1] == ([DEFAULT_NEGATIVE_PROMPT, "a dog"], "video")
    pipeline.encode_prompt(" a cat", dataclasses.replace(OPTIONS, cfg_scale=4.0, negative_prompt=" dark "))
    assert pipeline.text_encoder.calls[-1] == (["dark", "a cat"], "video")


def test_one_frame_uses_the_image_template(pipeline):
    image = pipeline("a tree", dataclasses.replace(OPTIONS, frames=1), progress=False)
    assert pipeline.text_encoder.calls[-1] == (["a tree"], "image")
    assert image.frames.shape == (1, 1, 32, 32, 3)


@pytest.mark.parametrize("kw, message", [
    (dict(height=40), "multiple of 16"), (dict(width=0), "multiple of 16"), (dict(frames=8), "4k \\+ 1.*try 5 or 9"),
    (dict(steps=0), "steps must be >= 1"), (dict(cfg_scale=0.5), "cfg scale"), (dict(noise_dtype="int8"), "noise dtype"),
    (dict(num_videos=0), "number of videos"), (dict(first_block_cache=-0.1), "first block cache threshold must be >= 0"),
])
def test_bad_options(kw, message):
    with pytest.raises(ValueError, match=message):
        SamplingOptions(**kw)


def test_progress_bar_shows_the_step_rate(pipeline, capsys):
    pipeline(" a cat", OPTIONS)
    err = capsys.readouterr().err
    assert "denoising" in err and "3/3" in err and ("s/step" in err or "step/s" in err), err


def test_text_batch_must_match_the_noise(pipeline):
    text = pipeline.encode_prompt("a cat", dataclasses.replace(OPTIONS, num_videos=4))
    noise, _ = pipeline.noise(OPTIONS)
    with pytest.raises(ValueError, match="text batch 4 must be the video batch 1"):
        pipeline.sample_latents(text, noise, OPTIONS)
    three = pipeline.encode_prompt("a cat", dataclasses.replace(OPTIONS, num_videos=3))
    with pytest.raises(ValueError, match="image CFG needs both"):  # three times the batch: image CFG, without its scales
        pipeline.sample_latents(three, noise, OPTIONS)


def test_first_block_cache_one_trace_for_every_threshold_and_a_huge_one_reuses_the_first_step(pipeline):
    """The threshold is an input of the one compiled cached step; above every change only the
    first step runs the later blocks, and the result differs from the uncached one."""
    cfg = dataclasses.replace(OPTIONS, steps=4, num_videos=2, cfg_scale=2.0)  # true CFG: the cache holds both halves
    plain = pipeline(" a cat", cfg, progress=False)
    never = pipeline(" a cat", dataclasses.replace(cfg, first_block_cache=1e-9), progress=False)
    assert never.full_steps == 4
    np.testing.assert_allclose(never.latents, plain.latents, rtol=0, atol=1e-5)  # every block ran: the plain step
    always = pipeline(" a cat", dataclasses.replace(cfg, first_block_cache=1e9), progress=False)
    assert always.full_steps == 1
    assert np.abs(always.latents - plain.latents).max() > 1e-3
    assert pipeline.compiled_step(FirstBlockCache()).traces == 1


def test_non_finite_latents_stop_the_loop_naming_the_step_before_decoding(pipeline, monkeypatch):
    """Before: NaN/inf latents were decoded into a black video with exit status 0."""
    calls = []
    monkeypatch.setattr(pipeline, "decode", lambda *a: calls.append(a))
    text = pipeline.encode_prompt("a cat", OPTIONS)
    noise, _ = pipeline.noise(OPTIONS)
    broken = jax.tree.map(lambda a: a, pipeline.state)  # new Variables: the shared pipeline's stay as they are
    broken["final_layer"]["linear"]["bias"].value = broken["final_layer"]["linear"]["bias"].value.at[0].set(np.inf)
    monkeypatch.setattr(pipeline, "state", broken)
    with pytest.raises(NonFiniteLatents, match=r"NaN or infinite at denoising step 1 of 3 \(sigma 1.000\); nothing was decoded"):
        pipeline(" a cat", OPTIONS, progress=False)
    assert calls == []
    # a later step: the loop itself with a step that goes wrong at its third call
    schedule = FlowSchedule.create(5, 7.0)

    def step(state, latents, t, sigma, sigma_next, conditions, carry, ip_scale):
        latents = latents * (np.nan if len(seen) == 2 else 1.0)
        seen.append(t)
        return latents, carry, jnp.isfinite(latents).all()

    seen = []
    with pytest.raises(NonFiniteLatents, match="at denoising step 3 of 5"):
        denoise(step, None, noise, schedule, pipeline.step_conditions(text, OPTIONS))
    assert len(seen) == 3


def test_text_masks_are_checked_on_the_host(pipeline):
    text = pipeline.encode_prompt("a cat", OPTIONS)
    with pytest.raises(ValueError, match=r"text mask row 0 \(00111111\) is not right-padded"):
        pipeline.step_conditions(dataclasses.replace(text, mask=np.array([[0, 0, 1, 1, 1, 1, 1, 1]])), OPTIONS)
