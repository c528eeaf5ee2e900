"""The VAE's convolutions formulated several ways in JAX, each timed beside torch in the same
run: where the decode time goes on a CPU (nn/causal_conv.py and nn/upsampled_conv.py pick the
CPU forms; issue 21 asks for the VAE at diffusers' speed).

    python bench/conv3d_forms.py                       # shapes of bench/vae.py's config, untiled
    python bench/conv3d_forms.py --shapes 17x96x64x32 --upsample 9x48x32x64:2x2x2 --threads 2

Causal convolutions (3x3x3, C -> C, float32): the input is the layer's after its spatial
replication padding; two copies of the first frame go in front, inside every timed call (torch:
F.pad then conv3d, as diffusers' HunyuanVideoCausalConv3d). Forms: `3d` XLA's 3D convolution;
`per tap` one 2D convolution per time tap (frames folded into the batch), without and with
CPU_COMPILER_OPTIONS (YNNPACK's convolutions); `stacked taps` one 2D convolution of every frame
with the three taps' kernels stacked in its output, summed at their time offsets (the VAE's CPU
form, nn/causal_conv.py).

Upsamplers (nearest upsampling by ft x fh x fw, the first frame in space only, then the causal
convolution; torch: F.interpolate, F.pad, conv3d): `upsample + stacked taps` materialises the
upsampled video; `phases` computes each output phase from the low-resolution input with summed
taps (nn/upsampled_conv.py, the VAE's CPU form).

Each time is the best of --repeats calls after a compile; the ratio is torch's time over ours
(above 1: faster than torch); `max rel diff` is the largest difference to torch's result over
its largest value, all forms. `matmul` compares a plain (4096 x 9C) x (9C x C) product.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout, uninstalled

from hyv_jax.nn.causal_conv import (  # noqa: E402
    CPU_COMPILER_OPTIONS,
    _causal_conv3d_stacked_taps,
    _conv3d_direct,
    _conv3d_frame_taps,
    pad_time,
)
from hyv_jax.nn.upsampled_conv import _phases, nearest_upsample  # noqa: E402


def _per_tap(x, k):
    return _conv3d_frame_taps(pad_time(x, 2), k, (1, 1, 1))


def _upsample_then_conv(x, k, factor):
    x = jnp.pad(nearest_upsample(x, factor), ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    return _causal_conv3d_stacked_taps(x, k, (1, 1))


# name -> (form, compiler options)
CONV_FORMS = {
    "3d": (lambda x, k: _conv3d_direct(pad_time(x, 2), k, (1, 1, 1)), None),
    "per tap": (_per_tap, None),
    "per tap, YNNPACK": (_per_tap, CPU_COMPILER_OPTIONS),
    "stacked taps, YNNPACK": (lambda x, k: _causal_conv3d_stacked_taps(x, k, (1, 1)), CPU_COMPILER_OPTIONS),
}
UPSAMPLE_FORMS = {
    "upsample + stacked taps, YNNPACK": _upsample_then_conv,
    "phases, YNNPACK": _phases,
}


def best(call, repeats: int) -> float:
    jax.block_until_ready(call())  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return min(times)


def _table(title, rows, forms, run_torch, make_form, repeats):
    import torch

    print(f"\n{title}\n")
    print("| input | torch s | " + " | ".join(f"{name} s (x torch)" for name in forms) + " | max rel diff |")
    print("|---|---:|" + "---:|" * len(forms) + "---:|")
    rng = np.random.default_rng(0)
    for label, shape, extra in rows:
        t, h, w, c = shape
        x = rng.standard_normal((1, t, h, w, c), np.float32)
        k = (rng.standard_normal((3, 3, 3, c, c)) * 0.05).astype(np.float32)
        xt, kt = torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous(), torch.from_numpy(k).permute(4, 3, 0, 1, 2).contiguous()
        with torch.no_grad():
            reference = best(lambda xt=xt, kt=kt, extra=extra: run_torch(xt, kt, extra), repeats)
            expected = run_torch(xt, kt, extra).permute(0, 2, 3, 4, 1).numpy()
        xj, kj = jnp.asarray(x), jnp.asarray(k)
        cells, worst = [], 0.0
        for form in forms.values():
            fn, options = make_form(form, extra)
            compiled = jax.jit(fn).lower(xj, kj).compile(compiler_options=options)
            seconds = best(lambda f=compiled, xj=xj, kj=kj: f(xj, kj), repeats)
            worst = max(worst, float(np.abs(np.asarray(compiled(xj, kj)) - expected).max() / np.abs(expected).max()))
            cells.append(f"{seconds:.3f} ({reference / seconds:.2f}x)")
        print(f"| {label} | {reference:.3f} | " + " | ".join(cells) + f" | {worst:.1e} |")


def _torch_causal(xt, kt, _):
    import torch.nn.functional as F

    return F.conv3d(F.pad(xt, (0, 0, 0, 0, 2, 0), mode="replicate"), kt)


def _torch_upsampler(xt, kt, factor):
    import torch
    import torch.nn.functional as F

    first = F.interpolate(xt[:, :, :1], scale_factor=(1, *factor[1:]), mode="nearest")
    rest = [F.interpolate(xt[:, :, 1:], scale_factor=factor, mode="nearest")] if xt.shape[2] > 1 else []
    return F.conv3d(F.pad(torch.cat([first, *rest], dim=2), (1, 1, 1, 1, 2, 0), mode="replicate"), kt)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="17x194x258x32,9x98x130x64,5x50x66x128",
                        help="comma-separated FRAMESxHEIGHTxWIDTHxCHANNELS causal-conv inputs, spatially padded (batch 1)")
    parser.add_argument("--upsample", default="9x96x128x64:2x2x2,5x48x64x128:2x2x2,5x24x32x128:1x2x2",
                        help="comma-separated FRAMESxHEIGHTxWIDTHxCHANNELS:FTxFHxFW upsampler inputs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch's intra-op threads (match the cores XLA uses)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} on {jax.default_backend()}, torch {torch.__version__} ({args.threads} threads)")

    def dims(text):
        return tuple(int(v) for v in text.split("x"))

    conv_rows = [(s, dims(s), None) for s in args.shapes.split(",") if s]
    _table("causal convolutions", conv_rows, CONV_FORMS, _torch_causal, lambda form, _: form, args.repeats)
    up_rows = [(s, dims(s.split(":")[0]), dims(s.split(":")[1])) for s in args.upsample.split(",") if s]
    _table("upsamplers", up_rows, UPSAMPLE_FORMS, _torch_upsampler,
           lambda form, factor: (lambda x, k: form(x, k, factor), CPU_COMPILER_OPTIONS), args.repeats)

    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 1152), np.float32)
    b = rng.standard_normal((1152, 512), np.float32)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    aj, bj, at, bt = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
    ours = best(lambda: jax.jit(jnp.matmul)(aj, bj), args.repeats)
    theirs = best(lambda: at @ bt, args.repeats)
    print(f"\nmatmul 4096x1152x512: torch {flops / theirs / 1e9:.0f} GFLOP/s, jax {flops / ours / 1e9:.0f} GFLOP/s "
          f"({theirs / ours:.2f}x)")


if __name__ == "__main__":
    main()
