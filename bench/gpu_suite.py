"""The 13B on one GPU in one command (an H100/H200: about 8 minutes), one table: attention
kernels at the model's lengths, the DiT's denoising step in each weight mode, the tiled VAE
decode, each with its time, achieved TFLOP/s and the allocator's peak beside the memory plan's
prediction (hyv_jax/sampling/memory_plan.py, the figures sample.py --dry-run prints).

    python bench/gpu_suite.py
    python bench/gpu_suite.py --only dit --sizes 544x960x129 --modes fp8,offload --repeats 2

No checkpoints: random weights of the real shapes, drawn on the device. Imports only what
sampling needs (jax, flax, orbax, tokenizers, tqdm, pillow, ml-dtypes: no grain, ml-collections,
librosa, av, array-record or tensorflow-datasets; README: "GPU suite" for an offline install).

Rows:
- attention: xla, cudnn and our Pallas kernel at L = 67,576 and 119,056 (544x960x129 and
  720x1280x129 with 256 text tokens of which 64 are valid), 24 heads x 128, bf16 forward; TFLOP/s
  by shared/spec/PERFORMANCE.md's count (4 L^2 D per head; XLA's L x L logits do not fit);
- dit: the 13B step (text-to-video, batch 1, embedded guidance) at each size, weights bf16
  resident, fp8 (--use-fp8) and offload (--use-cpu-offload): compile + first step, then the
  median s/step and TFLOP/s (12.07 PF per 720p step, 4.29 PF at 544p);
- vae: the tiled decode of 33x90x160 latents to 720x1280x129 frames (first call compiles the
  tiles; the time is the second call's).

Peaks: the allocator's peak_bytes_in_use never decreases, so the rows run in the order of their
planned peaks, smallest first, and each row reports the peak reached by its end; a row whose
reading did not rise above the previous one says so (its own peak is not visible).
"""

import argparse
import dataclasses
import gc
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention import timed  # noqa: E402  (bench/attention.py)
from hyv_jax.attention import attention  # noqa: E402
from hyv_jax.loading.memory_modes import MemoryMode  # noqa: E402
from hyv_jax.loading.models import TransformerLoader, load_vae  # noqa: E402
from hyv_jax.models.transformer import TransformerConfig  # noqa: E402
from hyv_jax.models.vae import VAEConfig  # noqa: E402
from hyv_jax.sampling.denoise import StepConditions  # noqa: E402
from hyv_jax.sampling.frames import decode_latents  # noqa: E402
from hyv_jax.sampling.memory_plan import GiB, decode_parts, flops_per_step, step_program  # noqa: E402
from hyv_jax.sampling.options import SamplingOptions  # noqa: E402

MODES = {"bf16": MemoryMode(), "fp8": MemoryMode(fp8=True), "offload": MemoryMode(offload=True),
         "fp8+offload": MemoryMode(fp8=True, offload=True)}
TEXT_TOKENS, TEXT_VALID = 256, 64


@dataclasses.dataclass
class Row:
    part: str
    setting: str
    planned: int | None  # bytes per device the memory plan predicts (None: not planned)
    run: object  # () -> (compile + first s, median s, FLOPs per call or None)
    cells: tuple = ()


def peak_bytes() -> int | None:
    stats = jax.local_devices()[0].memory_stats()  # None on a CPU
    return stats and stats["peak_bytes_in_use"]


def attention_rows(lengths, impls) -> list[Row]:
    rows = []
    for length in lengths:
        for impl in impls:
            def run(length=length, impl=impl):
                keys = jax.random.split(jax.random.key(0), 3)
                q, k, v = (jax.random.normal(key, (1, length, 24, 128), jnp.bfloat16) for key in keys)
                lengths = jnp.full((1,), length - TEXT_TOKENS + TEXT_VALID, jnp.int32)
                fn = jax.jit(lambda q, k, v: attention(q, k, v, kv_lengths=lengths, impl=impl))
                first, median = timed(lambda: jax.block_until_ready(fn(q, k, v)), 3)
                return first, median, 4.0 * length * length * 128 * 24
            rows.append(Row("attention", f"L {length:,}, {impl}", None, run))
    return rows


def dit_rows(tc: TransformerConfig, vc: VAEConfig, sizes, modes, repeats: int) -> list[Row]:
    rows = []
    for height, width, frames in sizes:
        options = SamplingOptions(height=height, width=width, frames=frames)
        for name in modes:
            memory = MODES[name]
            start = time.perf_counter()
            program = step_program(tc, vc, options, TEXT_TOKENS, memory=memory, standin=False)
            compile_s = time.perf_counter() - start
            planned = sum(p.bytes for p in program.parts())

            def run(program=program, memory=memory, compile_s=compile_s, options=options):
                state = nnx.split(TransformerLoader(tc, memory=memory, random_on_device=True)())[1]
                latents, conditions = _inputs(program)
                args = (state, latents, np.float32(900.0), np.float32(0.9), np.float32(0.88), conditions, ())
                first, median = timed(lambda: jax.block_until_ready(program.compiled(*args)), repeats)
                for array in jax.tree.leaves(state):
                    array.delete()
                video_tokens = int(np.prod(program.latents.shape[1:4])) // 4
                return compile_s + first, median, flops_per_step(tc, video_tokens, TEXT_TOKENS, 1)
            rows.append(Row("dit", f"{height}x{width}x{frames}, {name}", planned, run))
    return rows


def _inputs(program):
    """Random latents and text conditions of the program's shapes, placed as it expects."""
    key = jax.random.split(jax.random.key(1), 3)
    c = program.conditions
    mask = (jnp.arange(c.text_mask.shape[1]) < TEXT_VALID).astype(jnp.int32)[None].repeat(c.text_mask.shape[0], 0)
    conditions = StepConditions(jax.random.normal(key[0], c.text_states.shape, jnp.float32), mask,
                                jax.random.normal(key[1], c.pooled.shape, jnp.float32),
                                None if c.guidance is None else jnp.full(c.guidance.shape, 6000.0, jnp.float32), jnp.float32(1.0), {})
    return jax.random.normal(key[2], program.latents.shape, jnp.float32), conditions


def vae_row(vc: VAEConfig, size) -> Row:
    height, width, frames = size
    options = SamplingOptions(height=height, width=width, frames=frames)
    planned = sum(p.bytes for p in decode_parts(vc, options) if p.phase == "decode")

    def run():
        vae = load_vae(vc, seed=0)
        latents = jax.random.normal(jax.random.key(2), (1, (frames - 1) // 4 + 1, height // 8, width // 8, vc.latent_channels),
                                    jnp.float32)
        first, median = timed(lambda: jax.block_until_ready(decode_latents(vae, latents)), 1)
        return first, median, None
    return Row("vae", f"decode {height}x{width}x{frames}, tiled", planned, run)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="attention,dit,vae", help="comma-separated parts: attention, dit, vae")
    parser.add_argument("--sizes", default="544x960x129,720x1280x129", help="DiT sizes HEIGHTxWIDTHxFRAMES")
    parser.add_argument("--modes", default="bf16,fp8,offload", help=f"DiT weight modes: {', '.join(MODES)}")
    parser.add_argument("--impls", default="xla,cudnn,pallas", help="attention implementations")
    parser.add_argument("--repeats", type=int, default=1, help="timed DiT steps after the first (median)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes: a smoke run of this script on a CPU")
    args = parser.parse_args(argv)
    parts = args.only.split(",")
    sizes = [tuple(int(n) for n in s.split("x")) for s in args.sizes.split(",")]
    tc, vc, lengths, vae_size = TransformerConfig(), VAEConfig(), [67576, 119056], (720, 1280, 129)
    if args.tiny:
        tc = TransformerConfig(hidden_size=64, heads=2, double_blocks=2, single_blocks=2, rope_axes_dims=(8, 12, 12),
                               text_states_dim=32, text_states_dim_2=16)
        vc = VAEConfig(block_out_channels=(8, 16, 16, 16), norm_groups=4, tile_sample_size=32, tile_sample_frames=8)
        sizes, lengths, vae_size = [(64, 64, 9)], [1024], (64, 64, 9)
    began = time.perf_counter()
    print(f"device {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}; planning...", flush=True)
    rows = ((attention_rows(lengths, args.impls.split(",")) if "attention" in parts else [])
            + (dit_rows(tc, vc, sizes, args.modes.split(","), args.repeats) if "dit" in parts else [])
            + ([vae_row(vc, vae_size)] if "vae" in parts else []))
    rows.sort(key=lambda r: r.planned or 0)  # see the docstring: peaks only grow
    print("| part | setting | compile + first s | s per call | TFLOP/s | allocator peak GiB | planned GiB |")
    print("|---|---|---|---|---|---|---|")
    previous = peak_bytes() or 0
    for row in rows:
        try:
            first, median, flops = row.run()
        except Exception as error:  # a failing row (out of memory, no kernel) is a row, not the end
            print(f"| {row.part} | {row.setting} | failed: {type(error).__name__}: {str(error).splitlines()[0][:100]} | | | | |", flush=True)
            gc.collect()
            continue
        gc.collect()
        peak = peak_bytes()
        if peak is None:
            peak_cell = "n/a (no allocator statistics)"
        else:
            peak_cell = f"{peak / GiB:.3f}" if peak > previous else f"<= {peak / GiB:.2f} (not above the last row)"
            previous = max(previous, peak)
        tflops = f"{flops / median / 1e12:.1f}" if flops else ""
        planned = f"{row.planned / GiB:.3f}" if row.planned else ""
        print(f"| {row.part} | {row.setting} | {first:.1f} | {median:.3f} | {tflops} | {peak_cell} | {planned} |", flush=True)
    print(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
