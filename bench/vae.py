"""VAE decode benchmark: time and peak memory of our decode, tiled and untiled, against
diffusers' AutoencoderKLHunyuanVideo with the same (random) weights, side by side.

Each variant runs in a fresh subprocess so peak memory is its own: device peak on a GPU
(JAX / torch allocator statistics), otherwise the growth of the process's peak RSS over the
decode (compile included for JAX: the first call is the one measured for memory). The machine
may be shared: --rounds runs every variant once per round, in turn, so both sides see the same
load; a variant's time is the median over rounds of the median of its --repeats calls after
the first, and "speed vs diffusers" is diffusers' time over ours with the same tiling.

    python bench/vae.py --latent-frames 5 --height 256 --width 384 \
        --block-out-channels 32,64,128,128 --tile-size 128 --tile-frames 8
    python bench/vae.py --latent-frames 33 --height 720 --width 1280 --dtype bfloat16   # GPU
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout, uninstalled

VARIANTS = ("ours tiled", "ours untiled", "diffusers tiled", "diffusers untiled")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _diffusers_vae(args):
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    vae = AutoencoderKLHunyuanVideo(block_out_channels=args.block_out_channels, norm_num_groups=args.norm_groups).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # every weight random and non-zero (zero-init layers would skip work)
        for name, p in vae.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / float(np.sqrt(np.prod(p.shape[1:]))))
            else:
                p.copy_((0.0 if name.endswith("bias") else 1.0) + 0.1 * torch.randn(p.shape, generator=gen))
    return vae


def _latent(args) -> np.ndarray:
    h, w = args.height // 8, args.width // 8
    return np.random.default_rng(2).standard_normal((1, 16, args.latent_frames, h, w)).astype(np.float32)


def run_variant(args) -> dict:
    torch_vae = _diffusers_vae(args)
    latent = _latent(args)
    tiled = args.variant.endswith(" tiled")
    if args.variant.startswith("diffusers"):
        import torch

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
        device = "cuda" if torch.cuda.is_available() else "cpu"
        vae = torch_vae.to(device, dtype)
        if tiled:
            stride, stride_t = int(args.tile_size * (1 - args.overlap)), int(args.tile_frames * (1 - args.overlap))
            vae.enable_tiling(args.tile_size, args.tile_size, args.tile_frames, stride, stride, stride_t)
        else:
            vae.disable_tiling()
            vae.use_framewise_decoding = False
        z = torch.from_numpy(latent).to(device, dtype)

        def decode():
            with torch.no_grad():
                out = vae.decode(z).sample
            if device == "cuda":
                torch.cuda.synchronize()
            return tuple(out.shape)

        def peak():
            return torch.cuda.max_memory_allocated() if device == "cuda" else None
    else:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        from hyv_jax.convert.checkpoint_source import from_arrays
        from hyv_jax.convert.model_state import params_tree
        from hyv_jax.convert.vae_checkpoint import abstract_vae, read_torch_vae
        from hyv_jax.models.vae import VAEConfig
        from hyv_jax.models.vae_tiling import UNTILED

        config = VAEConfig(
            block_out_channels=args.block_out_channels, norm_groups=args.norm_groups, tile_sample_size=args.tile_size,
            tile_sample_frames=args.tile_frames, tile_overlap=args.overlap, dtype=args.dtype, param_dtype=args.dtype,
        )
        state = {k: v.numpy() for k, v in torch_vae.state_dict().items()}
        graphdef, params = nnx.split(abstract_vae(config))
        flat = read_torch_vae(from_arrays(state), config, np.float32)
        nnx.replace_by_pure_dict(params, params_tree({p: jnp.asarray(v, config.param_dtype) for p, v in flat.items()}))
        vae = nnx.merge(graphdef, params)
        del torch_vae, state, flat
        z = jnp.asarray(np.moveaxis(latent, 1, -1), config.dtype)
        plan = None if tiled else UNTILED

        def decode():
            return tuple(vae.decode(z, plan=plan).block_until_ready().shape)

        def peak():
            stats = jax.devices()[0].memory_stats()
            return stats.get("peak_bytes_in_use") if stats else None

    base = _rss_bytes()
    start = time.perf_counter()
    shape = decode()
    first = time.perf_counter() - start
    memory = peak() or max(_peak_rss_bytes() - base, 0)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        decode()
        times.append(time.perf_counter() - start)
    return {"variant": args.variant, "shape": shape, "first_s": first, "time_s": float(np.median(times)), "peak_bytes": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latent-frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=256, help="output pixels (multiple of 8)")
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--block-out-channels", type=lambda s: tuple(int(c) for c in s.split(",")), default=(128, 256, 512, 512))
    parser.add_argument("--norm-groups", type=int, default=32)
    parser.add_argument("--tile-size", type=int, default=256, help="tile side in output pixels")
    parser.add_argument("--tile-frames", type=int, default=64, help="tile length in output frames (+1)")
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per variant and round, after the first")
    parser.add_argument("--rounds", type=int, default=3, help="times every variant runs, in turn (fresh processes)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # set in the per-variant subprocess
    args = parser.parse_args()
    if args.height % 8 or args.width % 8:
        parser.error("--height and --width must be multiples of 8")
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args)))
        return

    variants = args.variants.split(",")
    runs = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--variant", variant], capture_output=True, text=True)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            runs[variant].append(json.loads(lines[0].removeprefix("RESULT ")))
    results = [dict(r[0], time_s=float(np.median([x["time_s"] for x in r])), first_s=float(np.median([x["first_s"] for x in r])),
                    peak_bytes=max(x["peak_bytes"] for x in r), rounds=[x["time_s"] for x in r]) for r in runs.values()]

    t, h, w = args.latent_frames, args.height // 8, args.width // 8
    print(f"decode latent 1x16x{t}x{h}x{w} -> video 1x3x{1 + 4 * (t - 1)}x{args.height}x{args.width}, "
          f"channels {args.block_out_channels}, {args.dtype}, tiles {args.tile_size} px / {args.tile_frames} frames, "
          f"overlap {args.overlap}")
    by_name = {r["variant"]: r for r in results}
    print(f"{args.rounds} rounds x {args.repeats} repeats; time and first call: medians")
    print(f"{'variant':<18} {'time s':>8} {'first s':>8} {'peak MiB':>9} {'speed vs diffusers':>19}  per round s")
    for r in results:
        reference = by_name.get(r["variant"].replace("ours", "diffusers"))
        speed = f"{reference['time_s'] / r['time_s']:.2f}x" if reference and r["variant"].startswith("ours") else ""
        print(f"{r['variant']:<18} {r['time_s']:>8.2f} {r['first_s']:>8.2f} {r['peak_bytes'] / 2**20:>9.0f} {speed:>19}  "
              + " ".join(f"{t:.2f}" for t in r["rounds"]))


if __name__ == "__main__":
    main()
