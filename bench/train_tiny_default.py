"""Trains the embedded tiny default from scratch and measures it (one command, CPU):

  python bench/train_tiny_default.py --out runs/tiny_default            # train + measure
  python bench/train_tiny_default.py --out runs/tiny_default --install  # ... and ship it
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default  # measure only
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default --first_block_cache 0.1
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default --trained_prompts --seeds 1

The defaults are the run that made the shipped weights: 38 min on 2 CPU cores.

Steps: `train.py train-vae` (configs/tiny_default.py's VAE on procedural scenes rendered on
the fly: single frames, then clips; 32x32 crops of scenes at the sampling size; the latent
scaling factor measured and stored) -> `train.py prepare --procedural` (scenes at the sampling
resolution, encoded with that VAE and the random text encoders of seed TEXT_ENCODER_SEED, the
one sampling uses) -> `train.py train` (the tiny transformer, embedded guidance fixed at the
sampling default, times shifted like the sampling schedule, EMA weights) -> sample the
held-out prompts with the sampling defaults and run the motion check (colour + centroid
direction). --install copies the trained transformer and VAE to hyv_jax/assets/tiny_default,
which sample.py then uses (with configs/tiny_default.py) when no checkpoint is given.
"""

import argparse
import dataclasses
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
import train  # noqa: E402
from configs import load_config  # noqa: E402
from hyv_jax.loading.shipped import ASSET_DIR, TEXT_ENCODER_SEED  # noqa: E402

CONFIG = "configs/tiny_default.py"


def measure(folder: Path, seeds: int = 2, first_block_cache: float = 0.0, trained: bool = False) -> dict[str, float]:
    """Samples every held-out prompt (or, `trained`, every training combination) `seeds` times
    from folder/{transformer,vae} with the tiny config's sampling defaults (and the first block
    cache threshold); prints per-clip results and returns the accuracies."""
    from hyv_jax.convert.transformer_checkpoint import restore_transformer
    from hyv_jax.convert.vae_checkpoint import restore_vae
    from hyv_jax.loading.models import load_text_encoder
    from hyv_jax.sampling.options import SamplingOptions
    from hyv_jax.sampling.pipeline import TextToVideoPipeline
    from hyv_jax.training.motion_check import check_clip, summarize
    from hyv_jax.training.procedural_scenes import caption, combinations

    config = load_config(CONFIG)
    pipeline = TextToVideoPipeline(load_text_encoder(config.text_encoder, seed=TEXT_ENCODER_SEED),
                                   restore_transformer(folder / "transformer"), restore_vae(folder / "vae"),
                                   release_text_encoder=False)
    options = dataclasses.replace(SamplingOptions.from_mapping(config.sampling), first_block_cache=first_block_cache)
    checks, computed = [], []
    for combo in combinations(held_out=not trained):
        prompt = caption(*combo)
        for seed in range(seeds):
            videos = pipeline(prompt, dataclasses.replace(options, seed=seed), progress=False)
            computed.append(videos.full_steps)
            c = check_clip(videos.frames[0], prompt)
            checks.append(c)
            print(f"{prompt!r} seed {seed}: colour {c.color}, direction {c.direction}, "
                  f"displacement {c.displacement[0]:+.2f},{c.displacement[1]:+.2f}")
    result = summarize(checks)
    print(f"{'training-prompt' if trained else 'held-out'} motion check ({len(checks)} clips, {sum(computed) / len(computed):.1f} of {options.steps} steps running "
          f"every block): {result}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/tiny_default", help="work folder (vae/, data/, run/)")
    p.add_argument("--measure", type=Path, help="only measure this folder holding transformer/ and vae/")
    p.add_argument("--first_block_cache", type=float, default=0.0, help="sample the measurement with this cache threshold")
    p.add_argument("--trained_prompts", action="store_true", help="measure the training combinations instead of the held-out ones")
    p.add_argument("--seeds", type=int, default=2, help="samples per prompt in the measurement")
    p.add_argument("--install", action="store_true", help=f"copy the trained weights to {ASSET_DIR}")
    p.add_argument("--vae_image_steps", type=int, default=1000, help="VAE steps on single frames")
    p.add_argument("--vae_steps", type=int, default=700, help="then VAE steps on clips (each with a single-frame step)")
    p.add_argument("--scenes", type=int, default=2048, help="procedural clips encoded for the transformer")
    p.add_argument("--steps", type=int, default=5000, help="transformer training steps")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args()
    if args.measure:
        measure(args.measure, args.seeds, args.first_block_cache, args.trained_prompts)
        return
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists: pass a new --out (or --measure {out}/final to measure it)")
    sampling = load_config(CONFIG).sampling
    size, frames = f"{sampling.height}x{sampling.width}", str(sampling.frames)
    start = time.perf_counter()
    train.main(["train-vae", "--config", CONFIG, "--out", str(out / "final" / "vae"), "--image_steps", str(args.vae_image_steps),
                "--steps", str(args.vae_steps), "--resolution", "32x32", "--scene_size", size, "--frames", frames])
    train.main(["prepare", "--config", CONFIG, "--procedural", str(args.scenes), "--resolutions", size, "--frames", frames,
                "--vae", str(out / "final" / "vae"), "--out", str(out / "data"), "--text_seed", str(TEXT_ENCODER_SEED)])
    train.main(["train", "--config", CONFIG, "--data", str(out / "data"), "--workdir", str(out / "run"),
                f"--config.training.steps={args.steps}", f"--config.training.batch_size={args.batch_size}",
                f"--config.training.optimizer.total_steps={args.steps}", f"--config.training.optimizer.lr={args.lr}",
                "--config.training.optimizer.warmup_steps=50", f"--config.training.guidance={sampling.embedded_guidance}",
                f"--config.training.time_shift={sampling.flow_shift}", "--config.training.ema_decay=0.995",
                "--config.training.log_every=50", "--config.training.checkpoint.every=500"])
    shutil.copytree(out / "run" / "final" / "transformer", out / "final" / "transformer")
    print(f"trained in {(time.perf_counter() - start) / 60:.1f} min")
    measure(out / "final")
    if args.install:
        shutil.rmtree(ASSET_DIR, ignore_errors=True)
        shutil.copytree(out / "final", ASSET_DIR)
        print(f"installed {ASSET_DIR}")


if __name__ == "__main__":
    main()
