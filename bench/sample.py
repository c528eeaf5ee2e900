"""Sampling, hyv_jax against diffusers.HunyuanVideoPipeline on the same weights, embeddings and
noise, side by side: seconds per denoising step and end to end (embeddings + noise -> uint8
frames, VAE decode included), the first run including JAX's compile.

  python bench/sample.py                                   # tiny config, 17x128x128, 10 steps
  python bench/sample.py --frames 33 --height 256 --width 256 --config.transformer.hidden_size=256 \\
      --config.transformer.heads=4 --config.transformer.rope_axes_dims='(16,24,24)'   # "medium"
  python bench/sample.py --first-block-cache 0.1        # both sides with the First Block Cache
  python bench/sample.py --config configs/hunyuan_video_t2v.py --frames 129 --height 544 --width 960 --no-diffusers  (GPU)
  XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/sample.py --ulysses-degree 2 --ring-degree 4
      # a mesh (sample.py's flags, or --config.parallel.mesh.*): its row beside the one-device row
      # (on simulated CPU devices a correctness smoke figure, not a speed claim)

Text encoders are not timed (random embeddings of the config's widths stand in). Weights are
random; float32 unless the config says otherwise.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parent))
from configs import load_config  # noqa: E402
from configs.command_line import parse_with_overrides  # noqa: E402
from hyv_jax.convert.model_state import params_to_numpy  # noqa: E402
from hyv_jax.convert.vae_checkpoint import export_torch_vae  # noqa: E402
from hyv_jax.models.text.text_encoder import PromptEmbeddings  # noqa: E402
from hyv_jax.models.transformer import TransformerConfig  # noqa: E402
from hyv_jax.models.vae import VAEConfig  # noqa: E402
from hyv_jax.loading.models import load_transformer, random_vae  # noqa: E402
from hyv_jax.sampling.denoise import FullModel  # noqa: E402
from hyv_jax.sampling.first_block_cache import FirstBlockCache  # noqa: E402
from hyv_jax.sampling.frames import to_uint8  # noqa: E402
from hyv_jax.sampling.options import SamplingOptions  # noqa: E402
from hyv_jax.sampling.pipeline import TextToVideoPipeline  # noqa: E402
from hyv_jax.parallel.plan import plan_if_parallel, set_context_degrees  # noqa: E402
from transformer import diffusers_model  # noqa: E402  (bench/transformer.py)


def diffusers_vae(c: VAEConfig, params, device):
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    with torch.device("meta"):
        vae = AutoencoderKLHunyuanVideo(latent_channels=c.latent_channels, block_out_channels=c.block_out_channels,
                                        layers_per_block=c.layers_per_block, norm_num_groups=c.norm_groups)
    dtype = getattr(torch, c.param_dtype)
    vae.load_state_dict({k: torch.from_numpy(np.array(v, np.float32)).to(dtype) for k, v in export_torch_vae(params, c).items()},
                        strict=True, assign=True)
    return vae.to(device).eval()


class TimedStep:
    """A pipeline's compiled step, recording each call's seconds."""

    def __init__(self, step):
        self.step, self.times = step, []

    def __call__(self, *args):
        start = time.perf_counter()
        latents, carry, finite = self.step(*args)
        latents.block_until_ready()
        self.times.append(time.perf_counter() - start)
        return latents, carry, finite


def run_ours(pipeline, text, noise, options):
    """(end-to-end seconds, per-step seconds, decode seconds, frames, steps that ran every block)."""
    policy = FirstBlockCache() if options.first_block_cache else FullModel()
    step = pipeline.compiled_step(policy)
    timed = pipeline.steps[policy] = TimedStep(step.step if isinstance(step, TimedStep) else step)
    start = time.perf_counter()
    latents, full_steps = pipeline.sample_latents(text, noise, options, progress=False)
    decode_start = time.perf_counter()
    frames = to_uint8(pipeline.decode(latents, options))
    end = time.perf_counter()
    return end - start, timed.times, end - decode_start, frames, full_steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.py")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--text-len", type=int, default=256)
    parser.add_argument("--cfg-scale", type=float, default=1.0, help="> 1 adds true CFG (a [negative, positive] batch)")
    parser.add_argument("--no-vae-tiling", action="store_true")
    parser.add_argument("--no-diffusers", action="store_true", help="time hyv_jax only")
    parser.add_argument("--first-block-cache", type=float, default=0.0, metavar="THRESHOLD",
                        help="both sides sample with the First Block Cache (diffusers' FirstBlockCacheConfig)")
    parser.add_argument("--ulysses-degree", type=int, help="as sample.py: a mesh row beside the one-device row")
    parser.add_argument("--ring-degree", type=int, help="as sample.py")
    args, overrides = parse_with_overrides(parser, sys.argv[1:])
    config = load_config(args.config, overrides)
    tc = TransformerConfig.from_mapping(config.transformer)
    if args.ulysses_degree or args.ring_degree:
        set_context_degrees(config.parallel, args.ulysses_degree or 1, args.ring_degree or 1, tc.heads)
    plan = plan_if_parallel(config.parallel)
    tc, vc = TransformerConfig.from_mapping(config.transformer), VAEConfig.from_mapping(config.vae)
    options = SamplingOptions(height=args.height, width=args.width, frames=args.frames, steps=args.steps, cfg_scale=args.cfg_scale,
                              noise_dtype="float32", sigma_spacing="diffusers", vae_tiling=not args.no_vae_tiling,
                              first_block_cache=args.first_block_cache)

    pipeline = TextToVideoPipeline(None, load_transformer(tc), random_vae(vc))
    rng = np.random.default_rng(0)
    n_text = 2 if options.true_cfg else 1
    mask = np.zeros((n_text, args.text_len), np.int32)
    mask[:, : args.text_len * 3 // 4] = 1
    text = PromptEmbeddings(rng.standard_normal((n_text, args.text_len, tc.text_states_dim), dtype=np.float32), mask,
                      rng.standard_normal((n_text, tc.text_states_dim_2), dtype=np.float32))
    noise, _ = pipeline.noise(options)
    noise = np.asarray(noise)

    cold, cold_steps, cold_decode, frames, full_steps = run_ours(pipeline, text, noise, options)
    warm, step_times, decode, frames, _ = run_ours(pipeline, text, noise, options)
    print(f"device {jax.devices()[0].device_kind}; config {args.config} {' '.join('--config.' + o for o in overrides)}; {args.frames}x{args.height}x{args.width}, "
          f"{args.steps} steps, text {args.text_len}, cfg {args.cfg_scale}; hyv_jax first run: first step {cold_steps[0]:.1f} s, "
          f"decode {cold_decode:.1f} s (compiles included)")
    if options.first_block_cache:
        print(f"first block cache {options.first_block_cache}: hyv_jax ran every block on {full_steps} of {args.steps} steps")
    rows = [("hyv_jax, one device", statistics.median(step_times), sum(step_times), decode, cold, warm)]
    if plan is not None:  # the same weights on the mesh
        meshed = TextToVideoPipeline(None, load_transformer(tc, mesh=plan.mesh), pipeline.vae, plan=plan)
        cold, _, _, _, _ = run_ours(meshed, text, noise, options)
        warm, step_times, decode, mesh_frames, _ = run_ours(meshed, text, noise, options)
        shape = " x ".join(f"{k} {v}" for k, v in plan.mesh.shape.items())
        rows.append((f"hyv_jax, {shape} ({plan.context_strategy})", statistics.median(step_times), sum(step_times), decode, cold, warm))
        off = np.abs(frames.astype(int) - mesh_frames.astype(int))
        print(f"uint8 frames, mesh vs one device: max difference {off.max()}, {np.count_nonzero(off)} of {off.size} values differ")

    if not args.no_diffusers:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline

        device = "cuda" if torch.cuda.is_available() else "cpu"
        reference = HunyuanVideoPipeline(
            text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
            transformer=diffusers_model(tc, params_to_numpy(pipeline.transformer), device),
            vae=diffusers_vae(vc, params_to_numpy(pipeline.vae), device), scheduler=FlowMatchEulerDiscreteScheduler(shift=options.flow_shift))
        reference.set_progress_bar_config(disable=True)
        if options.first_block_cache:
            from diffusers.hooks import FirstBlockCacheConfig

            reference.transformer.enable_cache(FirstBlockCacheConfig(threshold=options.first_block_cache))
        if not options.vae_tiling:  # diffusers decodes in temporal tiles unless told otherwise
            reference.vae.use_framewise_decoding = False
        else:  # the config's tiles (diffusers' stride is ours)
            reference.vae.enable_tiling(
                tile_sample_min_height=vc.tile_sample_size, tile_sample_min_width=vc.tile_sample_size,
                tile_sample_min_num_frames=vc.tile_sample_frames, tile_sample_stride_height=int(vc.tile_sample_size * (1 - vc.tile_overlap)),
                tile_sample_stride_width=int(vc.tile_sample_size * (1 - vc.tile_overlap)),
                tile_sample_stride_num_frames=int(vc.tile_sample_frames * (1 - vc.tile_overlap)))
        stamps = []

        def stamp(pipe, i, t, kwargs):
            if device == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
            return {}

        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        cfg = {} if not options.true_cfg else dict(negative_prompt_embeds=t(text.states[:1]), negative_prompt_attention_mask=t(text.mask[:1]),
                                                   negative_pooled_prompt_embeds=t(text.pooled[:1]), true_cfg_scale=options.cfg_scale)
        pos = slice(n_text - 1, n_text)

        def run_reference():
            stamps.clear()
            start = time.perf_counter()
            stamps.append(start)
            with torch.no_grad():
                out = reference(prompt_embeds=t(text.states[pos]), prompt_attention_mask=t(text.mask[pos]), pooled_prompt_embeds=t(text.pooled[pos]),
                                height=options.height, width=options.width, num_frames=options.frames, num_inference_steps=options.steps,
                                guidance_scale=options.embedded_guidance, latents=t(np.moveaxis(noise, -1, 1)), output_type="np",
                                return_dict=False, callback_on_step_end=stamp, **cfg)[0]
            end = time.perf_counter()
            return end - start, np.diff(stamps), end - stamps[-1], (out * 255).astype(np.uint8)

        ref_cold, _, _, ref_frames = run_reference()
        ref_warm, ref_steps, ref_decode, ref_frames = run_reference()
        rows.append(("diffusers", statistics.median(ref_steps), sum(ref_steps), ref_decode, ref_cold, ref_warm))
        off = np.abs(frames.astype(int) - ref_frames.astype(int))
        print(f"uint8 frames vs diffusers: max difference {off.max()}, {np.count_nonzero(off)} of {off.size} values differ")

    print("| implementation | median s/step | denoising s | decode + uint8 s | end to end, first run (incl. compile) s "
          "| end to end, second run s | denoising vs diffusers | second run vs diffusers |")
    print("|---|---|---|---|---|---|---|---|")
    ref = rows[-1] if rows[-1][0] == "diffusers" else None
    for name, step, denoising, dec, cold, warm in rows:
        ratios = (f"{ref[2] / denoising:.2f}x", f"{ref[5] / warm:.2f}x") if ref else ("-", "-")
        print(f"| {name} | {step:.4f} | {denoising:.2f} | {dec:.2f} | {cold:.2f} | {warm:.2f} | {ratios[0]} | {ratios[1]} |")


if __name__ == "__main__":
    main()
