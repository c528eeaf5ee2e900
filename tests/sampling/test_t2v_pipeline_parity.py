"""The whole sampling pipeline against diffusers.HunyuanVideoPipeline at the tiny config (CPU,
float32): same prompt embeddings, same initial noise, the diffusers transformer and VAE built
from our weights through the exporters. Embedded guidance, and true CFG with negative
embeddings (diffusers runs two passes, we batch [negative, positive])."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import channels_last, diffusers_tiny, report, torch_timestep_frequencies

from configs import load_config
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import export_torch_transformer
from hyv_jax.convert.vae_checkpoint import export_torch_vae
from hyv_jax.models.text.text_encoder import PromptEmbeddings
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.models.vae import VAEConfig
from hyv_jax.nn import timestep
from hyv_jax.sampling.frames import to_uint8
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.loading.models import random_transformer, random_vae
from hyv_jax.sampling.pipeline import TextToVideoPipeline

CONFIG = load_config("configs/tiny.py")
TINY_T = TransformerConfig.from_mapping(CONFIG.transformer)
TINY_V = VAEConfig.from_mapping(CONFIG.vae)
OPTIONS = SamplingOptions(height=32, width=48, frames=9, steps=4, num_videos=2, noise_dtype="float32", sigma_spacing="diffusers")
# First Block Cache: a threshold the relative changes of the first block residual stay clear of on
# these inputs (by 3% or more), and how many of the 8 steps then run every block
FBC_THRESHOLD, FBC_COMPUTED = 0.55, 4  # changes 0.49 0.60 0.48 0.66 0.50 0.54 0.78 after the first step


def embeddings(seed: int, valid: tuple[int, ...], length: int = 12) -> PromptEmbeddings:
    rng = np.random.default_rng(seed)
    mask = (np.arange(length)[None] < np.array(valid)[:, None]).astype(np.int32)
    return PromptEmbeddings(rng.standard_normal((len(valid), length, 32)).astype(np.float32), mask,
                      rng.standard_normal((len(valid), 16)).astype(np.float32))


def as_torch(state: dict) -> dict:
    return {k: torch.from_numpy(np.array(v)) for k, v in state.items()}


@pytest.fixture(scope="module")
def pipelines():
    """Ours with random non-zero weights, and diffusers' pipeline built from our exported weights."""
    from diffusers import AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

    transformer, vae = random_transformer(TINY_T, seed=11), random_vae(TINY_V, seed=12)
    ref_transformer = diffusers_tiny()
    ref_transformer.load_state_dict(as_torch(export_torch_transformer(params_to_numpy(transformer), TINY_T, "diffusers")), strict=True)
    ref_vae = AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=TINY_V.block_out_channels, norm_num_groups=4).eval()
    ref_vae.load_state_dict(as_torch(export_torch_vae(params_to_numpy(vae), TINY_V)), strict=True)
    reference = HunyuanVideoPipeline(text_encoder=None, tokenizer=None, transformer=ref_transformer, vae=ref_vae,
                                     scheduler=FlowMatchEulerDiscreteScheduler(shift=OPTIONS.flow_shift), text_encoder_2=None, tokenizer_2=None)
    reference.set_progress_bar_config(disable=True)
    return TextToVideoPipeline(None, transformer, vae), reference


def run_reference(reference, text: PromptEmbeddings, noise: np.ndarray, options: SamplingOptions, negative: PromptEmbeddings | None = None):
    latents = {}

    def keep_latents(pipe, i, t, kwargs):
        latents["last"] = kwargs["latents"]
        return {}

    t = lambda a: torch.from_numpy(a)  # noqa: E731
    extra = {} if negative is None else dict(
        negative_prompt_embeds=t(negative.states), negative_prompt_attention_mask=t(negative.mask),
        negative_pooled_prompt_embeds=t(negative.pooled), true_cfg_scale=options.cfg_scale)
    with torch.no_grad():
        frames = reference(
            prompt_embeds=t(text.states), prompt_attention_mask=t(text.mask), pooled_prompt_embeds=t(text.pooled),
            height=options.height, width=options.width, num_frames=options.frames, num_inference_steps=options.steps,
            guidance_scale=options.embedded_guidance, latents=t(np.ascontiguousarray(np.moveaxis(noise, -1, 1))),
            output_type="np", return_dict=False, callback_on_step_end=keep_latents, **extra,
        )[0]
    return channels_last(latents["last"].numpy()), frames


def retraced(pipeline: TextToVideoPipeline) -> TextToVideoPipeline:
    return TextToVideoPipeline(None, pipeline.transformer, pipeline.vae)


def compare(name, ours_pipe, text, noise, options, ref_latents, ref_frames, tolerance=2e-5):
    latents, full_steps = ours_pipe.sample_latents(text, noise, options, progress=False)
    _, rel = report(f"{name} latents", latents, ref_latents)
    assert rel < tolerance
    video = ours_pipe.decode(latents, options)
    err, _ = report(f"{name} frames [0, 1]", video, ref_frames)
    assert err < tolerance
    ours_u8, ref_u8 = to_uint8(video).astype(int), (ref_frames * 255).astype(np.uint8).astype(int)
    off = np.abs(ours_u8 - ref_u8)
    print(f"{name} uint8 frames: {np.count_nonzero(off)} of {off.size} values differ, by at most {off.max()}")
    assert off.max() <= 1 and np.count_nonzero(off) <= off.size * 1e-3
    inside = np.mean((ref_frames > 0) & (ref_frames < 1))
    print(f"{name}: {inside:.0%} of the reference frame values lie strictly inside (0, 1)")
    assert inside > 0.5  # the comparison is not of clipped constants
    return full_steps


def test_embedded_guidance_matches_diffusers(pipelines, monkeypatch):
    ours, reference = pipelines
    text = embeddings(0, (12, 5))
    noise = np.random.default_rng(1).standard_normal((2, 3, 4, 6, 4)).astype(np.float32)
    ref_latents, ref_frames = run_reference(reference, text, noise, OPTIONS)
    assert ref_frames.shape == (2, 9, 32, 48, 3)
    # our correctly rounded timestep-frequency table; torch's is an ulp off on 2 of its entries
    # (see test_transformer), which the guidance input of 6000 amplifies
    compare("embedded guidance 6.0, our frequency table", ours, text, noise, OPTIONS, ref_latents, ref_frames, tolerance=1e-4)
    # with torch's table both sides compute the same function (a new pipeline: a new trace)
    monkeypatch.setattr(timestep, "timestep_frequencies", torch_timestep_frequencies)
    compare("embedded guidance 6.0", retraced(ours), text, noise, OPTIONS, ref_latents, ref_frames)


def test_true_cfg_matches_diffusers(pipelines, monkeypatch):
    from hyv_jax.sampling.guidance import cfg_batch

    ours, reference = pipelines
    options = dataclasses.replace(OPTIONS, cfg_scale=3.5)
    text, negative = embeddings(2, (9, 12)), embeddings(3, (4, 7))
    noise = np.random.default_rng(4).standard_normal((2, 3, 4, 6, 4)).astype(np.float32)
    ref_latents, ref_frames = run_reference(reference, text, noise, options, negative)
    monkeypatch.setattr(timestep, "timestep_frequencies", torch_timestep_frequencies)
    compare("true CFG 3.5 + embedded 6.0", retraced(ours), cfg_batch(negative, text), noise, options, ref_latents, ref_frames)


@pytest.mark.parametrize("threshold, computed", [(1e-6, 8), (FBC_THRESHOLD, FBC_COMPUTED)])
def test_first_block_cache_matches_diffusers(pipelines, monkeypatch, threshold, computed):
    """diffusers' FirstBlockCacheConfig on its transformer against our cached step: the same
    steps skip the later blocks, and the latents agree."""
    from diffusers.hooks import FirstBlockCacheConfig

    ours, reference = pipelines
    options = dataclasses.replace(OPTIONS, steps=8, first_block_cache=threshold)
    text = embeddings(5, (12, 8))
    noise = np.random.default_rng(6).standard_normal((2, 3, 4, 6, 4)).astype(np.float32)
    reference.transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
    try:
        ref_latents, ref_frames = run_reference(reference, text, noise, options)
    finally:
        reference.transformer.disable_cache()
    monkeypatch.setattr(timestep, "timestep_frequencies", torch_timestep_frequencies)
    assert compare(f"first block cache {threshold}", retraced(ours), text, noise, options, ref_latents, ref_frames) == computed
