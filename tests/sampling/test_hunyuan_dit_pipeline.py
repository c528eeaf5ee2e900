"""The Hunyuan-DiT sampling loop against diffusers' HunyuanDiTPipeline with the same weights
(tiny config, float32, random non-zero), the same text embeddings (its prompt_embeds
arguments), the same initial latents and the same per-step DDPM noise (diffusers' scheduler
is handed our draws): final latents and decoded images; and the same loop on 8 simulated
devices (weights FSDP, batch over data) against one device."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import report, torch_random_init
from hunyuan_dit_helpers import TINY, diffusers_pair, model_with
from hunyuan_dit_helpers import TINY_VAE as VAE

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.sdxl_vae_checkpoint import read_torch_sdxl_vae
from hyv_jax.models.hunyuan_dit.text_encoder import DiTPromptEmbeddings
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE
from hyv_jax.parallel.mesh import make_mesh
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.sharded_init import state_shardings
from hyv_jax.sampling.ddpm_solvers import step_noise
from hyv_jax.sampling.hunyuan_dit_options import ImageSamplingOptions
from hyv_jax.sampling.hunyuan_dit_pipeline import HunyuanDiTPipeline


def _embeddings(config: HunyuanDiTConfig, rows: int, seed: int) -> DiTPromptEmbeddings:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, config.text_len + 1, rows)
    lengths_t5 = rng.integers(2, config.text_len_t5 + 1, rows)
    return DiTPromptEmbeddings(
        rng.standard_normal((rows, config.text_len, config.text_states_dim)).astype(np.float32),
        (np.arange(config.text_len)[None] < lengths[:, None]).astype(np.int32),
        rng.standard_normal((rows, config.text_len_t5, config.text_states_dim_t5)).astype(np.float32),
        (np.arange(config.text_len_t5)[None] < lengths_t5[:, None]).astype(np.int32))


def _diffusers_vae():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=VAE.block_out_channels,
                        layers_per_block=VAE.layers_per_block, latent_channels=4, norm_num_groups=VAE.norm_groups,
                        scaling_factor=VAE.scaling_factor).eval()
    torch_random_init(vae, 5)
    return vae


def _schedulers(options: ImageSamplingOptions):
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    common = dict(beta_schedule="scaled_linear", beta_start=options.beta_start, beta_end=options.beta_end,
                  prediction_type="v_prediction")
    # hydit/constants.py:SAMPLER_FACTORY
    if options.solver == "ddpm":
        return DDPMScheduler(steps_offset=1, clip_sample=False, clip_sample_range=1.0, **common)
    return DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++", trained_betas=None, **common)


CASES = {  # (size_style_cond, options, also sharded on 8 devices)
    "v1.2 ddpm cfg rescale": (False, ImageSamplingOptions(height=64, width=64, steps=4, cfg_scale=6.0, guidance_rescale=0.5,
                                                          seed=7, num_images=2), True),
    "v1.1 dpmms": (True, ImageSamplingOptions(height=64, width=64, steps=4, solver="dpmms", cfg_scale=5.0, beta_end=0.03,
                                              size_cond=(1024, 1024), seed=3, num_images=2), False),
}


@pytest.mark.parametrize("case", CASES)
def test_latents_and_images_match_diffusers(case, monkeypatch):
    import diffusers.schedulers.scheduling_ddpm as ddpm_module
    import torch
    from diffusers import HunyuanDiTPipeline as DiffusersPipeline

    size_style_cond, options, sharded = CASES[case]
    config = dataclasses.replace(TINY, size_style_cond=size_style_cond)
    ref_transformer, transformer = diffusers_pair(config, seed=11)
    ref_vae = _diffusers_vae()
    vae = model_with(lambda: SDXLVAE(VAE, rngs=nnx.Rngs(0)),
                     read_torch_sdxl_vae(from_arrays({k: v.numpy() for k, v in ref_vae.state_dict().items()}), VAE))
    ours = HunyuanDiTPipeline(transformer, vae)

    text = _embeddings(config, 4, seed=1)  # [negative x2; positive x2]
    noise = np.random.default_rng(2).standard_normal((2, 8, 8, 4)).astype(np.float32)
    latents = np.asarray(ours.sample(text, options, noise=noise, progress=False))
    images = ours.decode(latents)
    assert ours.traces == 1  # one compiled step for every step

    keys = jax.vmap(jax.random.key)(np.arange(2) + options.seed)
    draws = iter([np.moveaxis(np.asarray(step_noise(keys, i, (8, 8, 4))), -1, 1) for i in range(options.steps)])
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda *a, **k: torch.from_numpy(next(draws)))
    pipe = DiffusersPipeline(vae=ref_vae, text_encoder=None, tokenizer=None, transformer=ref_transformer,
                             scheduler=_schedulers(options), safety_checker=None, feature_extractor=None,
                             requires_safety_checker=False)
    seen = []
    t = lambda a: torch.from_numpy(np.asarray(a))  # noqa: E731
    out = pipe(height=64, width=64, num_inference_steps=options.steps, guidance_scale=options.cfg_scale,
               guidance_rescale=options.guidance_rescale, latents=t(np.moveaxis(noise, -1, 1)),
               prompt_embeds=t(text.states[2:]), negative_prompt_embeds=t(text.states[:2]),
               prompt_attention_mask=t(text.mask[2:]), negative_prompt_attention_mask=t(text.mask[:2]),
               prompt_embeds_2=t(text.states_t5[2:]), negative_prompt_embeds_2=t(text.states_t5[:2]),
               prompt_attention_mask_2=t(text.mask_t5[2:]), negative_prompt_attention_mask_2=t(text.mask_t5[:2]),
               original_size=(1024, 1024), target_size=(64, 64), use_resolution_binning=False, output_type="np",
               callback_on_step_end=lambda p, i, step, kw: seen.append(kw["latents"].numpy()) or {}).images
    _, rel = report(f"Hunyuan-DiT pipeline latents ({case})", np.moveaxis(latents, -1, 1), seen[-1])
    assert rel < 1e-5
    difference = np.abs(images.astype(int) - np.round(out * 255).astype(int))
    print(f"images: {np.mean(difference == 0):.4f} of the values equal, max difference {difference.max()}")
    assert difference.max() <= 1
    if sharded:  # the same loop with the weights FSDP over 4 devices and the batch over 2
        plan = ParallelPlan(make_mesh({"data": 2, "fsdp": 4, "context": 1, "tensor": 1}))
        graphdef, state = nnx.split(transformer)
        placed = nnx.merge(graphdef, jax.device_put(state, state_shardings(nnx.eval_shape(lambda: transformer), plan.mesh)))
        kernel = nnx.state(placed)["blocks"]["attn1"]["Wqkv"]["kernel"][...]
        assert len(kernel.sharding.device_set) == 8 and not kernel.sharding.is_fully_replicated
        on_mesh = HunyuanDiTPipeline(placed, vae, plan=plan)
        assert on_mesh.place(noise).sharding.spec[0] == "data"  # the images split over data (fsdp holds the weights)
        _, rel = report("sharded on 8 devices vs one", on_mesh.sample(text, options, noise=noise, progress=False), latents)
        assert rel < 1e-5
