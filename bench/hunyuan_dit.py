"""Hunyuan-DiT: the transformer forward and the sampling loop, hyv_jax against diffusers on the
same weights and inputs, side by side.

  python bench/hunyuan_dit.py                                   # tiny config, 256x256, CPU
  python bench/hunyuan_dit.py --config configs/hunyuan_dit.py --height 1024 --width 1024   (GPU)

Forward: one call of the transformer on the classifier-free-guidance batch (2 x --batch rows:
[negative; positive]), median seconds after warm-up (compile time printed separately),
achieved TFLOP/s by the count in `forward_flops`. Loop: --steps denoising steps of the solver
(text embeddings given, no VAE), ours (HunyuanDiTPipeline.sample: one jitted step) against
diffusers' HunyuanDiTPipeline(output_type="latent"). Random weights in the config's dtype;
the ratio column is diffusers' time over ours.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).parents[1]))
from configs import load_config  # noqa: E402
from configs.command_line import parse_with_overrides  # noqa: E402
from hyv_jax.convert.hunyuan_dit_checkpoint import export_torch_hunyuan_dit  # noqa: E402
from hyv_jax.convert.model_state import params_to_numpy  # noqa: E402
from hyv_jax.models.hunyuan_dit.text_encoder import DiTPromptEmbeddings  # noqa: E402
from hyv_jax.loading.hunyuan_dit import load_hunyuan_dit, load_sdxl_vae  # noqa: E402
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiTConfig  # noqa: E402
from hyv_jax.models.hunyuan_dit.vae import SDXLVAEConfig  # noqa: E402
from hyv_jax.sampling.hunyuan_dit_options import ImageSamplingOptions  # noqa: E402
from hyv_jax.sampling.hunyuan_dit_pipeline import HunyuanDiTPipeline  # noqa: E402
from transformer import timed  # noqa: E402  (bench/transformer.py)


def forward_flops(c: HunyuanDiTConfig, n_img: int, rows: int) -> float:
    """Multiply-adds x 2 of one forward: per block the self-attention projections (4 D^2 per
    image token), the cross-attention query/output (2 D^2) and key/value over the text
    (2 D Dt per text token), the MLP (2 D M), the skip linear (2 D^2, second half), and the
    attention matmuls (2 N^2 D self, 2 N L D cross)."""
    d, m, n_txt = c.hidden_size, c.mlp_hidden, c.text_len + c.text_len_t5
    per_block = (6 * d * d + 2 * d * m) * n_img + 2 * d * c.text_states_dim * n_txt + 2 * n_img * n_img * d + 2 * n_img * n_txt * d
    return 2 * rows * (c.depth * per_block + c.skip_blocks * 2 * d * d * n_img)


def diffusers_transformer(c: HunyuanDiTConfig, params, device):
    import torch
    from diffusers import HunyuanDiT2DModel

    with torch.device("meta"):
        model = HunyuanDiT2DModel(
            num_attention_heads=c.heads, attention_head_dim=c.head_dim, in_channels=c.in_channels, patch_size=c.patch_size,
            hidden_size=c.hidden_size, num_layers=c.depth, mlp_ratio=c.mlp_ratio, learn_sigma=c.learn_sigma,
            cross_attention_dim=c.text_states_dim, cross_attention_dim_t5=c.text_states_dim_t5,
            pooled_projection_dim=c.pooler_out_dim, text_len=c.text_len, text_len_t5=c.text_len_t5,
            use_style_cond_and_image_meta_size=c.size_style_cond)
    dtype = getattr(torch, c.param_dtype)
    state = {k: torch.from_numpy(np.array(v, np.float32)).to(dtype)
             for k, v in export_torch_hunyuan_dit(params, c, "diffusers").items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def random_text(c: HunyuanDiTConfig, rows: int) -> DiTPromptEmbeddings:
    rng = np.random.default_rng(0)
    mask = (np.arange(c.text_len)[None] < np.array([c.text_len // 3, c.text_len] * (rows // 2))[:, None]).astype(np.int32)
    mask_t5 = (np.arange(c.text_len_t5)[None] < np.array([c.text_len_t5 // 4, c.text_len_t5] * (rows // 2))[:, None]).astype(np.int32)
    return DiTPromptEmbeddings(rng.standard_normal((rows, c.text_len, c.text_states_dim)).astype(np.float32), mask,
                               rng.standard_normal((rows, c.text_len_t5, c.text_states_dim_t5)).astype(np.float32), mask_t5)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny_hunyuan_dit.py")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1, help="images; the model batch is twice this (CFG)")
    parser.add_argument("--steps", type=int, default=10, help="denoising steps of the timed loop")
    parser.add_argument("--solver", default="ddpm", help="ddpm | ddim | dpmms")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-diffusers", action="store_true", help="time hyv_jax only")
    parser.add_argument("--torch-threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; on a busy shared CPU, 1 avoids oversubscription)")
    args, overrides = parse_with_overrides(parser, sys.argv[1:])
    config = load_config(args.config, overrides)
    c = HunyuanDiTConfig.from_mapping(config.transformer)
    vae_config = SDXLVAEConfig.from_mapping(config.vae)
    options = ImageSamplingOptions(height=args.height, width=args.width, steps=args.steps, solver=args.solver,
                                   num_images=args.batch, beta_end=config.sampling.beta_end,
                                   size_cond=tuple(config.sampling.size_cond))
    height, width = options.size
    rows = 2 * args.batch
    h_lat, w_lat = height // vae_config.scale, width // vae_config.scale
    n_img = h_lat * w_lat // c.patch_size**2
    flops = forward_flops(c, n_img, rows)

    model = load_hunyuan_dit(c)  # random non-zero weights
    pipeline = HunyuanDiTPipeline(model, load_sdxl_vae(vae_config))
    text = random_text(c, rows)
    meta, style = pipeline.image_conditions(rows, height, width, options)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, h_lat, w_lat, c.in_channels)).astype(np.float32)
    t = np.full((rows,), 500.0, np.float32)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))
    inputs = [jnp.asarray(a) if a is not None else None for a in (x, t, text.states, text.mask, text.states_t5, text.mask_t5, meta, style)]
    start = time.perf_counter()
    out = forward(state, *inputs).block_until_ready()
    compile_s = time.perf_counter() - start
    rows_fwd = [("hyv_jax", timed(lambda: forward(state, *inputs).block_until_ready(), args.repeats))]
    pipeline.sample(text, options, progress=False)  # compile the step
    rows_loop = [("hyv_jax", timed(lambda: pipeline.sample(text, options, progress=False), max(1, args.repeats // 2)))]
    print(f"device {jax.devices()[0].device_kind}; config {args.config}; {height}x{width}, {n_img} image + "
          f"{c.text_len}+{c.text_len_t5} text tokens, model batch {rows}; {flops / 1e12:.4f} TFLOP per forward; "
          f"jax forward compile {compile_s:.1f} s")

    if not args.no_diffusers:
        import torch
        from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
        from diffusers import HunyuanDiTPipeline as DiffusersPipeline

        if args.torch_threads:
            torch.set_num_threads(args.torch_threads)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"diffusers on {device}" + (f" with {torch.get_num_threads()} CPU threads" if device == "cpu" else ""))
        dtype = getattr(torch, c.dtype)
        ref = diffusers_transformer(c, params_to_numpy(model), device)
        tt = lambda a: None if a is None else torch.from_numpy(np.asarray(a)).to(device)  # noqa: E731
        targs = dict(encoder_hidden_states=tt(text.states).to(dtype), text_embedding_mask=tt(text.mask),
                     encoder_hidden_states_t5=tt(text.states_t5).to(dtype), text_embedding_mask_t5=tt(text.mask_t5),
                     image_meta_size=tt(meta), style=tt(style))
        from hyv_jax.models.hunyuan_dit.rope import image_rope

        rope = tuple(torch.from_numpy(a).to(device) for a in image_rope(c.head_dim, (h_lat // c.patch_size, w_lat // c.patch_size),
                                                                        c.rope_base_grid))
        xt = tt(np.moveaxis(x, -1, 1)).to(dtype)

        def torch_forward():
            with torch.no_grad():
                result = ref(xt, tt(t).to(dtype), image_rotary_emb=rope, return_dict=False, **targs)[0]
            if device == "cuda":
                torch.cuda.synchronize()
            return result

        ref_out = torch_forward()
        rows_fwd.append(("diffusers", timed(torch_forward, args.repeats)))
        print(f"forward outputs: max abs difference {np.abs(np.moveaxis(ref_out.float().cpu().numpy(), 1, -1) - np.asarray(out, np.float32)).max():.3e}")
        schedule = dict(beta_schedule="scaled_linear", beta_start=options.beta_start, beta_end=options.beta_end,
                        prediction_type="v_prediction")
        scheduler = {"ddpm": lambda: DDPMScheduler(steps_offset=1, clip_sample=False, **schedule),
                     "ddim": lambda: DDIMScheduler(steps_offset=1, clip_sample=False, **schedule),
                     "dpmms": lambda: DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++", **schedule)}[args.solver]()
        pipe = DiffusersPipeline(vae=None, text_encoder=None, tokenizer=None, transformer=ref, scheduler=scheduler,
                                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        half = rows // 2

        def torch_loop():
            with torch.no_grad():
                result = pipe(height=height, width=width, num_inference_steps=args.steps, guidance_scale=options.cfg_scale,
                              prompt_embeds=targs["encoder_hidden_states"][half:], negative_prompt_embeds=targs["encoder_hidden_states"][:half],
                              prompt_attention_mask=targs["text_embedding_mask"][half:],
                              negative_prompt_attention_mask=targs["text_embedding_mask"][:half],
                              prompt_embeds_2=targs["encoder_hidden_states_t5"][half:],
                              negative_prompt_embeds_2=targs["encoder_hidden_states_t5"][:half],
                              prompt_attention_mask_2=targs["text_embedding_mask_t5"][half:],
                              negative_prompt_attention_mask_2=targs["text_embedding_mask_t5"][:half],
                              use_resolution_binning=False, output_type="latent").images
            if device == "cuda":
                torch.cuda.synchronize()
            return result

        pipe.set_progress_bar_config(disable=True)
        torch_loop()
        rows_loop.append(("diffusers", timed(torch_loop, max(1, args.repeats // 2))))

    print("| what | implementation | median s | TFLOP/s | diffusers / hyv_jax |")
    print("|---|---|---|---|---|")
    for what, rows_, work in (("forward", rows_fwd, flops), (f"{args.steps}-step {args.solver} loop", rows_loop, flops * args.steps)):
        reference = rows_[-1][1] if len(rows_) > 1 else None
        for name, seconds in rows_:
            ratio = f"{reference / seconds:.2f}x" if reference else "-"
            print(f"| {what} | {name} | {seconds:.4f} | {work / seconds / 1e12:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
