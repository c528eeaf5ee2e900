"""Attention implementations side by side at HunyuanVideo's sequence lengths.

  python bench/attention.py                                   (GPU/TPU: L = 67,576 and 119,056)
  python bench/attention.py --length 119056 --impls pallas,cudnn,torch --block-q 128 --block-k 64
  python bench/attention.py --backward --impls pallas,cudnn --backward-blocks 64 32
  python bench/attention.py --small                           (CPU: short sequences, 2 heads)

Every sample is the joint sequence of the model: video tokens then a text tail of --text-len
tokens of which only --text-valid are valid (kv_lengths). Inputs are random, bf16 by default.
Prints per implementation the compile time, the median time per call (after warm-up,
block_until_ready) and TFLOP/s by ../shared/spec/PERFORMANCE.md's count: 4 L^2 D per head for
the forward (all L keys, as the spec counts), 2.5x that for the backward. An implementation that
fails (wrong platform, out of memory: XLA materialises H L^2 logits) gets its error in the table.
torch: PyTorch scaled_dot_product_attention with the same key mask on the same device.
"""

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from hyv_jax.attention import attention, pallas_gpu, pallas_tpu  # noqa: E402

PLATFORM_IMPLS = {"gpu": "xla,cudnn,pallas,torch", "tpu": "xla,splash,pallas", "cpu": "xla,torch"}


def timed(fn, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, median seconds of the next `repeats`)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def jax_runner(impl: str, args, q, k, v, lengths):
    """A no-argument callable running one (forward or forward+backward) call to completion."""
    tuning = {name: value for name, value in (
        ("block_q", args.block_q), ("block_k", args.block_k), ("num_warps", args.num_warps),
        ("num_stages", args.num_stages), ("backward_blocks", args.backward_blocks)) if value}
    if impl == "pallas" and jax.default_backend() in ("gpu", "tpu") and tuning:
        module = pallas_gpu if jax.default_backend() == "gpu" else pallas_tpu
        fn = functools.partial(module.flash_attention, kv_lengths=lengths, **tuning)
    else:
        fn = functools.partial(attention, kv_lengths=lengths, impl=impl)
    if args.backward:
        d_out = jax.random.normal(jax.random.key(1), q.shape, q.dtype)
        step = jax.jit(jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v) * d_out, dtype=jnp.float32), argnums=(0, 1, 2)))
    else:
        step = jax.jit(lambda q, k, v: fn(q, k, v))
    return lambda: jax.block_until_ready(step(q, k, v))


def torch_runner(args, q, k, v, lengths):
    import torch
    import torch.nn.functional as F

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if jax.default_backend() == "gpu" and device != "cuda":
        raise RuntimeError("torch has no CUDA here: no same-device comparison")
    tq, tk, tv = (torch.from_numpy(np.array(x.astype(jnp.float32))).to(device, torch.bfloat16 if x.dtype == jnp.bfloat16
                  else torch.float32).transpose(1, 2).contiguous().requires_grad_(args.backward) for x in (q, k, v))
    mask = (torch.arange(k.shape[1], device=device)[None, :] < torch.from_numpy(np.array(lengths)).to(device)[:, None])
    mask = mask[:, None, None, :]
    d_out = torch.randn(tq.shape, device=device, dtype=tq.dtype)

    def run():
        out = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask)
        if args.backward:
            torch.autograd.grad(out, (tq, tk, tv), d_out)
        if device == "cuda":
            torch.cuda.synchronize()

    if not args.backward:
        return lambda: torch.no_grad()(run)()
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, nargs="+", help="joint sequence lengths L (video + text)")
    parser.add_argument("--impls", help="comma-separated: xla, cudnn, pallas, splash, auto, torch, "
                        "pallas_gpu_interpret, ... (default: what the platform has)")
    parser.add_argument("--heads", type=int)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--text-len", type=int, default=256, help="text tokens at the end of the sequence")
    parser.add_argument("--text-valid", type=int, default=64, help="valid (unpadded) text tokens")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--backward", action="store_true", help="time forward + backward (jax.grad)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="CPU preset: L 1,024 and 2,000, 2 heads")
    parser.add_argument("--block-q", type=int, help="pallas query block (default: the kernel's)")
    parser.add_argument("--block-k", type=int, help="pallas key block (default: the kernel's)")
    parser.add_argument("--num-warps", type=int, help="pallas GPU forward")
    parser.add_argument("--num-stages", type=int, help="pallas GPU forward")
    parser.add_argument("--backward-blocks", type=int, nargs=2, help="pallas GPU: resident and step rows")
    args = parser.parse_args()
    lengths_to_run = args.length or ([1024, 2000] if args.small else [67576, 119056])
    heads = args.heads or (2 if args.small else 24)
    impls = (args.impls or PLATFORM_IMPLS[jax.default_backend()]).split(",")
    flops_per_call = 4 * args.head_dim * heads * args.batch * (3.5 if args.backward else 1.0)

    print(f"device {jax.devices()[0].device_kind} ({jax.default_backend()}); {heads} heads x {args.head_dim}, "
          f"batch {args.batch}, {args.dtype}, text {args.text_valid}/{args.text_len} valid; "
          f"{'forward + backward' if args.backward else 'forward'}; median of {args.repeats}")
    print("| L | implementation | compile+first s | median ms | TFLOP/s |")
    print("|---|---|---|---|---|")
    for length in lengths_to_run:
        keys = jax.random.split(jax.random.key(0), 3)
        q, k, v = (jax.random.normal(key, (args.batch, length, heads, args.head_dim), args.dtype) for key in keys)
        lengths = jnp.full((args.batch,), length - args.text_len + args.text_valid, jnp.int32)
        for impl in impls:
            try:
                run = torch_runner(args, q, k, v, lengths) if impl == "torch" else jax_runner(impl, args, q, k, v, lengths)
                first, median = timed(run, args.repeats)
            except Exception as error:  # a failing impl is a table row, not the end of the run
                print(f"| {length:,} | {impl} | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | | |")
                continue
            tflops = flops_per_call * length**2 / median / 1e12
            print(f"| {length:,} | {impl} | {first:.2f} | {median * 1e3:.2f} | {tflops:.2f} |")


if __name__ == "__main__":
    main()
