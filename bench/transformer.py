"""One transformer forward, hyv_jax against diffusers on the same weights, side by side.

  python bench/transformer.py --config configs/tiny.py --frames 33 --height 128 --width 128
  python bench/transformer.py --config configs/hunyuan_video_t2v.py --frames 129 --height 544 --width 960  (GPU)

Prints median seconds per forward (after warm-up; compile time separately), achieved TFLOP/s
by ../shared/spec/PERFORMANCE.md's count (24 D^2 L per block for the linears, 4 L^2 D for
attention), the JAX/diffusers speed ratio, and the outputs' max abs difference.
"""

import argparse
import statistics
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
from hyv_jax.convert.model_state import params_to_numpy  # noqa: E402
from hyv_jax.convert.transformer_checkpoint import export_torch_transformer  # noqa: E402
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig  # noqa: E402


def forward_flops(c: TransformerConfig, n_img: int, n_txt: int, batch: int) -> float:
    length = n_img + n_txt
    blocks = c.double_blocks + c.single_blocks
    return batch * blocks * (24 * c.hidden_size**2 * length + 4 * length**2 * c.hidden_size)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def diffusers_model(c: TransformerConfig, params, device):
    import torch
    from diffusers import HunyuanVideoTransformer3DModel

    with torch.device("meta"):
        model = HunyuanVideoTransformer3DModel(
            in_channels=c.in_channels, out_channels=c.out_channels, num_attention_heads=c.heads,
            attention_head_dim=c.head_dim, num_layers=c.double_blocks, num_single_layers=c.single_blocks,
            num_refiner_layers=c.refiner_blocks, mlp_ratio=c.mlp_ratio, patch_size=c.patch_size[1],
            patch_size_t=c.patch_size[0], qk_norm="rms_norm", guidance_embeds=c.guidance_embed,
            text_embed_dim=c.text_states_dim, pooled_projection_dim=c.text_states_dim_2,
            rope_theta=c.rope_theta, rope_axes_dim=c.rope_axes_dims,
        )
    dtype = getattr(torch, c.param_dtype)
    state = {k: torch.from_numpy(np.array(v, np.float32)).to(dtype) for k, v in export_torch_transformer(params, c, "diffusers").items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.py")
    parser.add_argument("--frames", type=int, default=33, help="video frames (4k+1)")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--text-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-diffusers", action="store_true", help="time hyv_jax only")
    args, overrides = parse_with_overrides(parser, sys.argv[1:])
    c = TransformerConfig.from_mapping(load_config(args.config, overrides).transformer)

    t_lat, h_lat, w_lat = (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, t_lat, h_lat, w_lat, c.in_channels)).astype(np.float32)
    text = rng.standard_normal((args.batch, args.text_len, c.text_states_dim)).astype(np.float32)
    mask = np.zeros((args.batch, args.text_len), np.int32)
    mask[:, : max(1, args.text_len * 3 // 4)] = 1
    pooled = rng.standard_normal((args.batch, c.text_states_dim_2)).astype(np.float32)
    t, g = np.full((args.batch,), 700.0, np.float32), np.full((args.batch,), 6000.0, np.float32)
    n_img = t_lat * h_lat * w_lat // (c.patch_size[0] * c.patch_size[1] * c.patch_size[2])
    flops = forward_flops(c, n_img, args.text_len, args.batch)

    model = HunyuanVideoTransformer(c, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    step = jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))
    inputs = [jnp.asarray(a) for a in (x, t, text, mask, pooled, g)]
    start = time.perf_counter()
    out = step(state, *inputs).block_until_ready()
    compile_s = time.perf_counter() - start
    jax_s = timed(lambda: step(state, *inputs).block_until_ready(), args.repeats)
    print(f"device {jax.devices()[0].device_kind}; config {args.config}; {args.frames}x{args.height}x{args.width}, "
          f"{n_img} video + {args.text_len} text tokens, batch {args.batch}; {flops / 1e12:.3f} TFLOP per forward; "
          f"jax compile {compile_s:.1f} s")
    rows = [("hyv_jax (XLA attention)", jax_s)]

    if not args.no_diffusers:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        ref = diffusers_model(c, params_to_numpy(model), device)
        dtype = getattr(torch, c.dtype)
        tin = [torch.from_numpy(a).to(device) for a in (np.moveaxis(x, -1, 1), t, text, mask, pooled, g)]
        tin = [a.to(dtype) if a.is_floating_point() and i not in (1, 5) else a for i, a in enumerate(tin)]

        def torch_forward():
            with torch.no_grad():
                result = ref(*tin).sample
            if device == "cuda":
                torch.cuda.synchronize()
            return result

        ref_out = torch_forward()
        rows.append(("diffusers", timed(torch_forward, args.repeats)))
        diff = np.abs(np.moveaxis(ref_out.float().cpu().numpy(), 1, -1) - np.asarray(out, np.float32)).max()
        print(f"max abs difference of the outputs: {diff:.3e}")

    print("| implementation | median s/forward | TFLOP/s | speed vs diffusers |")
    print("|---|---|---|---|")
    reference = rows[-1][1] if len(rows) > 1 else None
    for name, seconds in rows:
        ratio = f"{reference / seconds:.2f}x" if reference else "-"
        print(f"| {name} | {seconds:.4f} | {flops / seconds / 1e12:.3f} | {ratio} |")


if __name__ == "__main__":
    main()
