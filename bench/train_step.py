"""Training-step benchmark: step time, FLOPs (from the compiled step) and MFU, full or LoRA,
on synthetic cached latents; and a sharding report for full fine-tuning under FSDP.

  python bench/train_step.py --config configs/tiny.py --frames 9 --height 64 --width 64
  python bench/train_step.py --config configs/hunyuan_video_t2v.py --lora --frames 129 --height 544 \\
      --width 960 --config.transformer.remat=full        (one GPU: 13B LoRA with remat)
  JAX_PLATFORMS=cpu XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/train_step.py \\
      --config configs/hunyuan_video_t2v.py --shard-report --mesh fsdp=8 \\
      --config.transformer.double_blocks=2 --config.transformer.single_blocks=4 \\
      --config.transformer.param_dtype=float32
      (full fine-tuning of the 13B widths at reduced depth: per-device bytes of parameters and
       Adam moments under FSDP, without allocating them)
"""

import argparse
import statistics
import sys
from pathlib import Path

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).parents[1]))
from configs import load_config  # noqa: E402
from configs.command_line import parse_with_overrides  # noqa: E402
from hyv_jax.convert.transformer_checkpoint import abstract_transformer  # noqa: E402
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig  # noqa: E402
from hyv_jax.parallel.logical_axes import param_shardings  # noqa: E402
from hyv_jax.parallel.mesh import make_mesh  # noqa: E402
from hyv_jax.parallel.plan import ParallelPlan  # noqa: E402
from hyv_jax.parallel.sharded_init import init_sharded  # noqa: E402
from hyv_jax.training.lora import inject_lora  # noqa: E402
from hyv_jax.training.metrics_log import peak_flops  # noqa: E402
from hyv_jax.training.trainer import Trainer  # noqa: E402


def shard_report(tcfg: TransformerConfig, mesh) -> None:
    model = abstract_transformer(tcfg)
    shardings = param_shardings(model, mesh)
    total = per_device = 0
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        sharding = shardings[tuple(str(p) for p in path)]
        nbytes = np.dtype(var.dtype).itemsize
        total += int(np.prod(var.shape)) * nbytes
        per_device += int(np.prod(sharding.shard_shape(var.shape))) * nbytes
    # AdamW keeps two moments in the parameter dtype, sharded like the parameters.
    print(f"mesh {dict(mesh.shape)}: parameters {total / 2**30:.2f} GiB total, {per_device / 2**30:.2f} GiB per device; "
          f"with Adam moments {3 * total / 2**30:.2f} GiB total, {3 * per_device / 2**30:.2f} GiB per device "
          f"({total / per_device:.1f}x smaller per device)")


def state_bytes_per_device(state) -> list[int]:
    """Bytes each device holds of `state`'s arrays (their addressable shards)."""
    per_device = {d: 0 for d in jax.devices()}
    for leaf in jax.tree.leaves(state):
        for shard in leaf.addressable_shards:
            per_device[shard.device] += shard.data.nbytes
    return list(per_device.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/tiny.py")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (training.lora) on random base weights")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--text_len", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--mesh", nargs="*", default=["data=-1"], help="axis=size pairs")
    p.add_argument("--shard-report", action="store_true")
    args, overrides = parse_with_overrides(p, sys.argv[1:])
    config = load_config(args.config, overrides)
    tcfg = TransformerConfig.from_mapping(config.transformer)
    mesh = make_mesh({k: int(v) for k, v in (a.split("=") for a in args.mesh)})
    if args.shard_report:
        return shard_report(tcfg, mesh)

    # each device creates only its shards, as full fine-tuning of the 13B must
    model = init_sharded(lambda: HunyuanVideoTransformer(tcfg, rngs=nnx.Rngs(0)), mesh)
    if args.lora:
        lc = config.training.lora
        inject_lora(model, rank=lc.rank, alpha=lc.alpha, targets=tuple(lc.targets), rngs=nnx.Rngs(1))
    trainer = Trainer(model, config.training, ParallelPlan(mesh), lora=args.lora)
    b = config.training.batch_size
    shape = (b, (args.frames - 1) // 4 + 1, args.height // 8, args.width // 8, tcfg.in_channels)
    r = np.random.default_rng(0)
    batch = {"latents": r.normal(size=shape).astype(np.float32),
             "text_states": r.normal(size=(b, args.text_len, tcfg.text_states_dim)).astype(np.float32),
             "text_mask": np.ones((b, args.text_len), np.int32),
             "text_pooled": r.normal(size=(b, tcfg.text_states_dim_2)).astype(np.float32)}
    trainer.step(batch)  # compile + warm-up
    for name, tree in (("trained state (parameters, optimizer, step, rng)", trainer.state), ("frozen weights", trainer.frozen)):
        print(f"{name} per device: {', '.join(f'{n / 2**20:.1f}' for n in state_bytes_per_device(tree))} MiB")
    times = [trainer.step(batch).seconds for _ in range(args.steps)]
    t = statistics.median(times)
    peak = peak_flops(jax.devices()[0])
    flops = trainer.flops_per_step
    mfu = f"{flops / t / peak:.1%}" if flops and peak else "n/a (unknown device peak)"
    print(f"{'LoRA' if args.lora else 'full'} step, latents {shape}, remat={tcfg.remat}, mesh {dict(mesh.shape)} on "
          f"{jax.devices()[0].device_kind}: median {t * 1e3:.1f} ms/step, {flops or 0:.3e} FLOP/step (compiled, per device), "
          f"MFU {mfu}")


if __name__ == "__main__":
    main()
