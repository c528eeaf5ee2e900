"""One 3x3x3 convolution (C -> C, stride 1, float32) formulated several ways in JAX, each timed
beside torch's conv3d in the same run: where the VAE's decode time goes on a CPU
(nn/causal_conv.py picks the CPU form; issue 21 asks for the VAE at diffusers' speed).

    python bench/conv3d_forms.py                         # the VAE's shapes of bench/vae.py's config
    python bench/conv3d_forms.py --shapes 11x96x128x128 --threads 2

Forms: `3d` XLA's 3D convolution; `taps` one 2D convolution per time tap (frames folded into the
batch); `im2col` the 3x3 window concatenated into channels, one matmul per time tap; `shifted` 27
shifted matmuls accumulated; `taps, YNNPACK` the per-tap form compiled with
CPU_COMPILER_OPTIONS, which hand the 2D convolutions to YNNPACK (the CPU form the VAE runs,
nn/causal_conv.py); `matmul` a plain (4096 x 9C) x (9C x C) product for XLA's matmul speed
against torch's. Each time is the best of --repeats calls after a compile; the ratio is torch's
time over ours (above 1: faster than torch). Winograd F(2x2, 3x3) matmuls, the CPU form before
YNNPACK, measured 0.38x / 0.76x / 0.91x at 32 / 64 / 128 channels (README).
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
    _conv3d_direct,
    _conv3d_frame_taps,
)


def im2col(x, k):
    b, t, h, w, c = x.shape
    cols = jnp.concatenate([x[:, :, i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3)], axis=-1)
    return sum(jnp.einsum("bthwc,co->bthwo", cols[:, tap:t - 2 + tap], k[tap].reshape(9 * c, -1)) for tap in range(3))


def shifted(x, k):
    b, t, h, w, c = x.shape
    return sum(jnp.einsum("bthwc,co->bthwo", x[:, dt:t - 2 + dt, i:h - 2 + i, j:w - 2 + j], k[dt, i, j])
               for dt in range(3) for i in range(3) for j in range(3))


def taps(x, k):
    return _conv3d_frame_taps(x, k, (1, 1, 1))


# name -> (form, compiler options)
FORMS = {"3d": (lambda x, k: _conv3d_direct(x, k, (1, 1, 1)), None), "taps": (taps, None), "im2col": (im2col, None),
         "shifted": (shifted, None), "taps, YNNPACK": (taps, CPU_COMPILER_OPTIONS)}


def best(call, repeats: int) -> float:
    jax.block_until_ready(call())  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="11x96x128x128,11x192x256x64,11x192x256x32",
                        help="comma-separated FRAMESxHEIGHTxWIDTHxCHANNELS inputs (batch 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch's intra-op threads (match the cores XLA uses)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    print(f"jax {jax.__version__} on {jax.default_backend()}, torch {torch.__version__} ({args.threads} threads)")
    print("| input | torch conv3d s | " + " | ".join(f"{name} s (x torch)" for name in FORMS) + " | max rel diff |")
    print("|---|---:|" + "---:|" * len(FORMS) + "---:|")
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        t, h, w, c = (int(v) for v in shape.split("x"))
        x = rng.standard_normal((1, t, h, w, c), np.float32)
        k = (rng.standard_normal((3, 3, 3, c, c)) * 0.05).astype(np.float32)
        xt, kt = torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous(), torch.from_numpy(k).permute(4, 3, 0, 1, 2).contiguous()
        with torch.no_grad():
            reference = best(lambda: torch.nn.functional.conv3d(xt, kt), args.repeats)
            expected = torch.nn.functional.conv3d(xt, kt).permute(0, 2, 3, 4, 1).numpy()
        xj, kj = jnp.asarray(x), jnp.asarray(k)
        cells, worst = [], 0.0
        for form, options in FORMS.values():
            compiled = jax.jit(form).lower(xj, kj).compile(compiler_options=options)
            seconds = best(lambda f=compiled: f(xj, kj), args.repeats)
            worst = max(worst, float(np.abs(np.asarray(compiled(xj, kj)) - expected).max() / np.abs(expected).max()))
            cells.append(f"{seconds:.3f} ({reference / seconds:.2f}x)")
        print(f"| {shape} | {reference:.3f} | " + " | ".join(cells) + f" | {worst:.1e} |")
    a = rng.standard_normal((4096, 1152), np.float32)
    b = rng.standard_normal((1152, 512), np.float32)
    flops = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    aj, bj, at, bt = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
    ours = best(lambda: jax.jit(jnp.matmul)(aj, bj), args.repeats)
    theirs = best(lambda: at @ bt, args.repeats)
    print(f"matmul 4096x1152x512: torch {flops / theirs / 1e9:.0f} GFLOP/s, jax {flops / ours / 1e9:.0f} GFLOP/s "
          f"({theirs / ours:.2f}x)")


if __name__ == "__main__":
    main()
