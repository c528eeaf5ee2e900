"""Trains the embedded tiny default from scratch and measures it (one command, CPU):

  python bench/train_tiny_default.py --out runs/tiny_default            # train + measure
  python bench/train_tiny_default.py --out runs/tiny_default --install  # ... and ship it
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default  # measure only
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default --first_block_cache 0.1
  python bench/train_tiny_default.py --measure hyv_jax/assets/tiny_default --trained_prompts --seeds 1
  python bench/train_tiny_default.py --caption_losses hyv_jax/assets/tiny_default       # per-caption loss
  python bench/train_tiny_default.py --out runs/td2 --init runs/td1/final ...           # continue a trained pair

The defaults are the settings of the first of the three runs that made the shipped weights (77
min on 2 CPU cores, shared with other work; 2026-12-01): 1400 VAE clip steps, 4096 prepared
clips, 12000 transformer steps, and the VAE loss's foreground weight covering pixels the
reconstruction paints (no halo) plus a posterior noise floor (--vae_min_std 0.1). The second
(2026-12-02) continued its VAE (train.py train-vae --init <first>/final/vae --image_steps 200
--steps 1400 --lr 1e-3: its reconstructions then kept the colour of thin shapes, the motion
check on them 0.86 -> 1.00), prepared the data again and trained a new transformer from
scratch with these defaults. The third continued that transformer 6000 steps at lr 5e-4 with
--config.training.caption_dropout=0.1 (held out 7/8 -> 8/8; README "The tiny default").
--caption_losses on the previous pair showed why the floor: green captions had loss 0.0018 against 0.21 for white,
because its VAE coded green objects in latent deviations of ~0.01 (posterior noise ~0.004)
that the transformer's loss hardly saw.

Steps: `train.py train-vae` (configs/tiny_default.py's VAE on procedural scenes rendered on
the fly: single frames, then clips; 32x32 crops of scenes at the sampling size; the latent
scaling factor measured and stored) -> `train.py prepare --procedural` (scenes at the sampling
resolution, encoded with that VAE and the random text encoders of seed TEXT_ENCODER_SEED, the
one sampling uses) -> `train.py train` (the tiny transformer, embedded guidance fixed at the
sampling default, times shifted like the sampling schedule, EMA weights) -> sample the
held-out prompts with the sampling defaults and run the motion check (colour + centroid
direction). --install copies the trained transformer and VAE to hyv_jax/assets/tiny_default
and writes the seeded text encoders beside them, which sample.py then uses (with
configs/tiny_default.py) when no checkpoint is given.
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
from hyv_jax.loading.shipped import ASSET_DIR, TEXT_ENCODER_SEED, save_text_encoders  # noqa: E402

CONFIG = "configs/tiny_default.py"


def reconstruct(vae, clips):
    """uint8 clips through the VAE (posterior mean, decoded), as uint8."""
    import jax.numpy as jnp
    import numpy as np

    mean, _ = vae.encode(jnp.asarray(clips, jnp.float32) / 127.5 - 1.0)
    return np.clip(np.round((np.asarray(vae.decode(mean), np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def reconstruction_psnr(vae_folder: Path, clips_per_prompt: int = 2) -> float:
    """PSNR (dB, over uint8 frames) of the VAE's reconstructions of clips of the held-out
    prompts at the sampling size; prints it per prompt."""
    import numpy as np

    from hyv_jax.convert.vae_checkpoint import restore_vae
    from hyv_jax.training.procedural_scenes import caption, combinations, render

    sampling = load_config(CONFIG).sampling
    vae = restore_vae(vae_folder)
    rng, errors = np.random.default_rng(0), []
    for combo in combinations(held_out=True):
        clips = np.stack([render(*combo, frames=sampling.frames, height=sampling.height, width=sampling.width, rng=rng)
                          for _ in range(clips_per_prompt)])
        recon = reconstruct(vae, clips).astype(np.float32)
        errors.append(np.mean(np.square(recon - clips), axis=(1, 2, 3, 4)))
        print(f"{caption(*combo)!r}: reconstruction PSNR {_psnr(errors[-1].mean()):.2f} dB")
    psnr = _psnr(float(np.mean(errors)))
    print(f"VAE reconstruction PSNR on {len(errors) * clips_per_prompt} held-out clips: {psnr:.2f} dB")
    return psnr


def reconstruction_check(vae_folder: Path) -> dict[str, float]:
    """The motion check on the VAE's reconstructions of one rendered clip per combination
    (training and held out): what a transformer that learned the latents perfectly could reach
    through this VAE. Prints the combinations whose reconstruction fails it."""
    import numpy as np

    from hyv_jax.convert.vae_checkpoint import restore_vae
    from hyv_jax.training.motion_check import check_clip, summarize
    from hyv_jax.training.procedural_scenes import caption, combinations, render

    sampling = load_config(CONFIG).sampling
    vae, rng, checks = restore_vae(vae_folder), np.random.default_rng(1), []
    for combo in combinations() + combinations(held_out=True):
        clip = render(*combo, frames=sampling.frames, height=sampling.height, width=sampling.width, rng=rng)
        checks.append(check := check_clip(reconstruct(vae, clip[None])[0], caption(*combo)))
        if not (check.color_ok and check.direction_ok):
            print(f"reconstruction of {caption(*combo)!r}: colour {check.color}, direction {check.direction}")
    result = summarize(checks)
    print(f"motion check on VAE reconstructions ({len(checks)} clips): {result}")
    return result


def _psnr(mse: float) -> float:
    import math

    return 10.0 * math.log10(255.0**2 / mse)


def caption_losses(folder: Path, scenes: int = 8, times: int = 8) -> dict[str, float]:
    """The flow-matching loss of folder/transformer on `scenes` fresh clips of every caption
    (training and held-out), at `times` fixed times (the training density's quantiles, shifted
    like training) with fixed noise: which captions the model has learned. Prints them sorted,
    then the mean per colour, shape and direction."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from hyv_jax.convert.transformer_checkpoint import restore_transformer
    from hyv_jax.convert.vae_checkpoint import restore_vae
    from hyv_jax.loading.models import load_text_encoder
    from hyv_jax.training.flow_matching import flow_matching_loss, noisy_latents, shift_time
    from hyv_jax.training.procedural_scenes import caption, combinations, render

    config = load_config(CONFIG)
    sampling = config.sampling
    model, vae = restore_transformer(folder / "transformer"), restore_vae(folder / "vae")
    text_encoder = load_text_encoder(config.text_encoder, seed=TEXT_ENCODER_SEED)
    # training draws sigmoid(N(0, 1)) then shifts: its quantiles, shifted the same way
    quantiles = jax.nn.sigmoid(jax.scipy.stats.norm.ppf((np.arange(times) + 0.5) / times))
    t_grid = np.asarray(shift_time(quantiles, sampling.flow_shift))

    @nnx.jit
    def loss_at(model, x0, noise, t, states, mask, pooled):
        x_t, target = noisy_latents(x0, noise, t)
        guidance = jnp.full(t.shape, sampling.embedded_guidance * 1000.0)
        return flow_matching_loss(model(x_t, t * 1000.0, states, mask, pooled, guidance), target, t)

    rng, losses = np.random.default_rng(0), {}
    held_out = set(combinations(held_out=True))
    for i, combo in enumerate(combinations() + combinations(held_out=True)):
        clips = np.stack([render(*combo, frames=sampling.frames, height=sampling.height, width=sampling.width, rng=rng)
                          for _ in range(scenes)])
        x0 = vae.encode(jnp.asarray(clips, jnp.float32) / 127.5 - 1.0)[0] * vae.config.scaling_factor
        text = text_encoder.encode([caption(*combo)]).map(lambda a: np.repeat(a, scenes, axis=0))
        noise = jax.random.normal(jax.random.key(i), (times, *x0.shape))
        losses[combo] = float(np.mean([loss_at(model, x0, noise[k], jnp.full((scenes,), t), text.states, text.mask, text.pooled)
                                       for k, t in enumerate(t_grid)]))
    for combo, loss in sorted(losses.items(), key=lambda kv: -kv[1]):
        print(f"{loss:.4f} {caption(*combo)}{' (held out)' if combo in held_out else ''}")
    for position, name in enumerate(("colour", "shape", "direction")):
        words = sorted({c[position] for c in losses})
        means = {w: np.mean([v for c, v in losses.items() if c[position] == w and c not in held_out]) for w in words}
        print(f"training loss by {name}: " + ", ".join(f"{w} {m:.4f}" for w, m in sorted(means.items(), key=lambda kv: -kv[1])))
    return {caption(*c): v for c, v in losses.items()}


def measure(folder: Path, seeds: int = 2, first_block_cache: float = 0.0, trained: bool = False,
            cfg_scale: float | None = None) -> dict[str, float]:
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
    if cfg_scale is not None:
        options = dataclasses.replace(options, cfg_scale=cfg_scale)
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
    p.add_argument("--caption_losses", type=Path, help="only print the per-caption loss of this folder's transformer/ (and vae/)")
    p.add_argument("--init", type=Path, help="continue from this folder's vae/ and transformer/ (fresh optimizers) instead of random weights")
    p.add_argument("--first_block_cache", type=float, default=0.0, help="sample the measurement with this cache threshold")
    p.add_argument("--trained_prompts", action="store_true", help="measure the training combinations instead of the held-out ones")
    p.add_argument("--seeds", type=int, default=2, help="samples per prompt in the measurement")
    p.add_argument("--install", action="store_true", help=f"copy the trained weights to {ASSET_DIR}")
    p.add_argument("--vae_image_steps", type=int, default=1000, help="VAE steps on single frames")
    p.add_argument("--vae_steps", type=int, default=1400, help="then VAE steps on clips (each with a single-frame step)")
    p.add_argument("--vae_lr", type=float, default=2e-3)
    p.add_argument("--vae_min_std", type=float, default=0.1, help="train-vae --min_posterior_std (least posterior noise)")
    p.add_argument("--scenes", type=int, default=4096, help="procedural clips encoded for the transformer")
    p.add_argument("--steps", type=int, default=12000, help="transformer training steps")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--caption_dropout", type=float, default=0.0,
                   help="fraction of samples trained on the default negative prompt (then measure with --cfg_scale > 1)")
    p.add_argument("--cfg_scale", type=float, help="sample the measurement with this true-CFG scale (default: the config's)")
    args = p.parse_args()
    if args.measure:
        reconstruction_psnr(args.measure / "vae")
        reconstruction_check(args.measure / "vae")
        measure(args.measure, args.seeds, args.first_block_cache, args.trained_prompts, args.cfg_scale)
        return
    if args.caption_losses:
        caption_losses(args.caption_losses)
        return
    out = Path(args.out)
    if out.exists():
        raise SystemExit(f"{out} exists: pass a new --out (or --measure {out}/final to measure it)")
    sampling = load_config(CONFIG).sampling
    size, frames = f"{sampling.height}x{sampling.width}", str(sampling.frames)
    start = time.perf_counter()
    init_vae, init_transformer = (["--init", str(args.init / part)] if args.init else [] for part in ("vae", "transformer"))
    train.main(["train-vae", "--config", CONFIG, "--out", str(out / "final" / "vae"), "--image_steps", str(args.vae_image_steps),
                "--steps", str(args.vae_steps), "--lr", str(args.vae_lr), "--resolution", "32x32", "--scene_size", size,
                "--frames", frames, "--min_posterior_std", str(args.vae_min_std), *init_vae])
    train.main(["prepare", "--config", CONFIG, "--procedural", str(args.scenes), "--resolutions", size, "--frames", frames,
                "--vae", str(out / "final" / "vae"), "--out", str(out / "data"), "--text_seed", str(TEXT_ENCODER_SEED)])
    train.main(["train", "--config", CONFIG, "--data", str(out / "data"), "--workdir", str(out / "run"), *init_transformer,
                f"--config.training.steps={args.steps}", f"--config.training.batch_size={args.batch_size}",
                f"--config.training.optimizer.total_steps={args.steps}", f"--config.training.optimizer.lr={args.lr}",
                "--config.training.optimizer.warmup_steps=50", f"--config.training.guidance={sampling.embedded_guidance}",
                f"--config.training.time_shift={sampling.flow_shift}", "--config.training.ema_decay=0.995",
                f"--config.training.caption_dropout={args.caption_dropout}", "--config.training.log_every=50",
                "--config.training.checkpoint.every=500"])
    shutil.copytree(out / "run" / "final" / "transformer", out / "final" / "transformer")
    print(f"trained in {(time.perf_counter() - start) / 60:.1f} min")
    reconstruction_psnr(out / "final" / "vae")
    reconstruction_check(out / "final" / "vae")
    measure(out / "final", cfg_scale=args.cfg_scale)
    if args.install:
        shutil.rmtree(ASSET_DIR, ignore_errors=True)
        shutil.copytree(out / "final", ASSET_DIR)
        save_text_encoders(load_config(CONFIG).text_encoder)  # the seeded encoders it learned with, shipped beside it
        print(f"installed {ASSET_DIR}")


if __name__ == "__main__":
    main()
