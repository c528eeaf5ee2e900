"""Train or fine-tune the HunyuanVideo transformer with flow matching, and prepare its data.

Commands
  train        (default) full or LoRA training on cached latents, sharded over a mesh, resumable
  prepare      videos/images + captions -> cached-latent ArrayRecord shards (VAE + text encoders)
  train-vae    the VAE from scratch on procedural scenes rendered on the fly (the tiny default's)
  export-lora  a LoRA checkpoint -> .safetensors in the diffusers, original or kohya layout

Full training (all transformer weights; from scratch, or from a converted checkpoint):
  python train.py train --config configs/tiny.py --data data/shards --workdir runs/tiny \\
      --config.training.steps=2000 --config.training.batch_size=8 --config.training.optimizer.lr=3e-4
  (the learning rate warms up over training.optimizer.warmup_steps, then decays over training.steps,
  or over training.optimizer.total_steps when that is set)
  13B full fine-tuning needs FSDP over many devices: --config.parallel.mesh.data=1
  --config.parallel.mesh.fsdp=-1 --init ckpts/hyv_jax/transformer --config.transformer.param_dtype=float32
  (the `parallel` section, shared with sampling: mesh axes data/fsdp/context/tensor, -1 takes
  the remaining devices, the batch splits over data x fsdp; long videos split their tokens over
  context with --config.parallel.mesh.context=4 --config.parallel.context_strategy=ulysses|ring|usp)
LoRA (only the adapters train and are saved; rank/alpha/targets in training.lora):
  python train.py train --config configs/hunyuan_video_t2v.py --init ckpts/hyv_jax/transformer \\
      --data data/shards --workdir runs/lora --config.training.lora.enabled=True \\
      --config.training.lora.rank=32 --config.transformer.remat=full
  writes runs/lora/final/lora.safetensors (diffusers naming) and the merged transformer.
  --init-lora FILE starts the adapters from a LoRA file in any format sample.py --lora reads
  (diffusers/PEFT, original keys, kohya/musubi, ComfyUI); it must fit the adapters exactly
  (targets in training.lora.targets, rank large enough: the error says which).
Export a LoRA checkpoint for other tools (--format diffusers: HunyuanVideoLoraLoaderMixin;
  original: diffusion-pipe's transformer.double_blocks... keys, read by ComfyUI and diffusers;
  kohya: musubi's lora_unet_... keys with an explicit alpha, default training.lora.alpha):
  python train.py export-lora --config configs/hunyuan_video_t2v.py --workdir runs/lora \\
      --init ckpts/hyv_jax/transformer --format kohya --alpha 16 --out lora_kohya.safetensors \\
      --config.training.lora.rank=32
Caption dropout for true CFG: --config.training.caption_dropout=0.1 trains that fraction of
  samples on sample.py's default negative prompt (what its --cfg-scale > 1 guides away from when
  no --neg-prompt is given; an empty one is replaced by it, as upstream), whose encodings
  `prepare` stores beside the shards (negative_prompt.npz).
Mixed precision: --config.transformer.dtype (compute) and --config.transformer.param_dtype
  (master weights; float32 with bfloat16 compute is the usual choice for full training).
Remat: --config.transformer.remat=none|full|dots|dots_no_batch, or keep named activations:
  save_qkv|save_attention|save_qkv_attention|save_attention_mlp|save_all_named|save:NAME,NAME
  (names: query_proj key_proj value_proj attention_out mlp_hidden; per scanned block).
Resume: checkpoints go to WORKDIR/checkpoints every training.checkpoint.every steps (async,
  atomic, newest training.checkpoint.keep kept) with the optimizer, step, RNG and data-iterator
  state; `--resume` continues bit-exactly from the newest, `--resume_step N` from step N (the
  later ones are moved to WORKDIR/checkpoints/superseded/; a damaged newest checkpoint is refused
  with the earlier steps named).
Logs: a progress bar, and TensorBoard scalars (loss, grad_norm, lr, step time, samples/s, MFU)
  in WORKDIR/tensorboard. --profile_steps N:M writes a jax.profiler trace to WORKDIR/profile.
Multi-host: run the same command on every host (one process each); --config.parallel.distributed
  (default: when SLURM, GKE TPU, Open MPI or $JAX_COORDINATOR_ADDRESS name a job; True on Cloud
  TPU VM slices) joins them; process 0 prints and writes TensorBoard and final/ (README.md).

Data preparation (a folder where x.mp4 / x.png has its caption in x.txt, or a TFDS source):
  python train.py prepare --config configs/hunyuan_video_t2v.py --input videos/ --out data/shards \\
      --vae ckpts/hyv_jax/vae --llm_dir ckpts/hyv_jax/llm --clip_dir ckpts/hyv_jax/clip \\
      --resolutions 544x960 960x544 720x720 --frames 1 33 65 129
  python train.py prepare ... --tfds NAME:SPLIT --tfds_media_key video --tfds_caption_key caption
  python train.py prepare --config configs/tiny_default.py --procedural 2048 --resolutions 64x64 --frames 9 ...
      (the procedural scenes the embedded tiny default trains on; bench/train_tiny_default.py runs it all)
Each clip goes to the bucket of nearest aspect ratio and the longest frame count it fills.

VAE training (reconstruction L1 + MSE + a small KL; writes a converted VAE folder `prepare --vae` reads,
with the latent scaling factor measured on the scenes):
  python train.py train-vae --config configs/tiny_default.py --out runs/tiny_vae --image_steps 1000 --steps 700 \\
      --resolution 32x32 --scene_size 64x64 --frames 9
  (single frames first, then 9-frame clips interleaved with frames; 32x32 crops of 64x64 scenes)
  (--init runs/tiny_vae continues from a trained VAE folder with a fresh optimizer)

Config overrides: --config.key.path=value (Python literals), e.g. --config.training.lora.rank=16.
Compiled programs are kept in $HYV_JAX_COMPILE_CACHE (default ~/.cache/hyv_jax/xla; empty: off),
so a resumed or repeated run skips the compile.
"""

import argparse
import sys
from pathlib import Path

from configs import load_config
from configs.command_line import add_debug_flag, parse_with_overrides, run_command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    t = sub.add_parser("train", help="full or LoRA training (the default command)")
    t.add_argument("--config", default="configs/tiny.py", help="model config file")
    t.add_argument("--data", required=True, help="folder of cached-latent shards (from `prepare`)")
    t.add_argument("--workdir", required=True, help="checkpoints/, tensorboard/ and final/ go here")
    t.add_argument("--init", help="converted transformer checkpoint to start from (required for LoRA)")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --workdir")
    t.add_argument("--resume_step", type=int, help="continue from this checkpoint step (later ones are moved to checkpoints/superseded/)")
    t.add_argument("--init-lora", dest="init_lora", metavar="FILE",
                   help="start the LoRA adapters from this LoRA file (any format sample.py --lora reads)")
    t.add_argument("--profile_steps", metavar="N:M", help="write a jax.profiler trace of steps N to M to WORKDIR/profile/process_<i>")

    p = sub.add_parser("prepare", help="videos/images with captions -> cached-latent shards")
    p.add_argument("--config", default="configs/hunyuan_video_t2v.py", help="model config (vae and text_encoder sections)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="folder of media files, each with a .txt caption")
    src.add_argument("--tfds", help="TensorFlow Datasets source NAME[:SPLIT] (default split: train)")
    src.add_argument("--procedural", type=int, metavar="N",
                     help="N procedural scenes (coloured shapes moving in captioned directions; held-out prompts "
                          "excluded) at the first --resolutions entry and the longest --frames")
    p.add_argument("--tfds_media_key", default="video")
    p.add_argument("--tfds_caption_key", default="caption")
    p.add_argument("--tfds_data_dir")
    p.add_argument("--out", required=True, help="output folder (must not hold a dataset yet)")
    p.add_argument("--vae", required=True, help="converted VAE checkpoint folder")
    p.add_argument("--llm_dir", help="converted LLM text encoder folder (None: random, tiny config only)")
    p.add_argument("--clip_dir", help="converted CLIP text encoder folder (None: random, tiny config only)")
    p.add_argument("--resolutions", nargs="+", default=["544x960", "960x544", "720x720"], help="HEIGHTxWIDTH buckets")
    p.add_argument("--frames", nargs="+", type=int, default=[1, 33, 65, 129], help="frame-count buckets (1+4k)")
    p.add_argument("--shard_size", type=int, default=1024)
    p.add_argument("--text_seed", type=int, default=0,
                   help="seed of random text encoders (no --llm_dir/--clip_dir); sampling must use the same one")

    v = sub.add_parser("train-vae", help="the VAE from scratch on procedural scenes -> converted VAE folder")
    v.add_argument("--config", default="configs/tiny.py", help="model config (its vae section)")
    v.add_argument("--out", required=True, help="output folder for the converted VAE")
    v.add_argument("--init", help="converted VAE folder to continue from (its stored config, a fresh optimizer); default: random init")
    v.add_argument("--image_steps", type=int, default=800, help="first steps on single frames (colours and shapes)")
    v.add_argument("--image_batch_size", type=int, default=8)
    v.add_argument("--steps", type=int, default=500, help="then steps on clips, each followed by a single-frame step")
    v.add_argument("--batch_size", type=int, default=2, help="clips per step")
    v.add_argument("--lr", type=float, default=2e-3)
    v.add_argument("--kl_weight", type=float, default=1e-4)
    v.add_argument("--min_posterior_std", type=float, default=0.0,
                   help="least noise (unscaled latent units) in the posterior sample the decoder trains on; keeps every content's latent code large")
    v.add_argument("--foreground_weight", type=float, default=10.0, help="extra loss weight on pixels unlike the clip's median, in the clip or its reconstruction")
    v.add_argument("--resolution", default="32x32", help="HEIGHTxWIDTH of the training crops")
    v.add_argument("--scene_size", default="64x64", help="HEIGHTxWIDTH the scenes are rendered at (objects keep this pixel size)")
    v.add_argument("--frames", type=int, default=9, help="frames per clip (1 + 4k)")
    v.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("export-lora", help="LoRA training checkpoint -> .safetensors (diffusers, original or kohya layout)")
    e.add_argument("--config", default="configs/hunyuan_video_t2v.py")
    e.add_argument("--workdir", required=True)
    e.add_argument("--init", required=True, help="the converted base transformer the LoRA was trained on")
    e.add_argument("--step", type=int, help="checkpoint step (default: newest)")
    e.add_argument("--format", default="diffusers", choices=("diffusers", "original", "kohya"),
                   help="diffusers: transformer.transformer_blocks.N.attn.to_q.lora_A.weight (scale in B); original: "
                        "transformer.double_blocks.N.img_attn_qkv.lora_A.weight (scale in B); kohya: "
                        "lora_unet_double_blocks_N_img_attn_qkv.lora_down.weight with .alpha")
    e.add_argument("--alpha", type=float, help="kohya only: the alpha stored in the file (default: training.lora.alpha)")
    e.add_argument("--out", required=True, help="output .safetensors path")
    for command in (t, p, v, e):
        add_debug_flag(command)
    return parser


def _train(args, config) -> None:
    from hyv_jax.parallel.mesh import initialize_distributed
    from hyv_jax.parallel.plan import ParallelPlan
    from hyv_jax.parallel.processes import is_main, main_print
    from hyv_jax.training.build import build_trainer, save_trained
    from hyv_jax.training.checkpointing import TrainCheckpoints
    from hyv_jax.training.data_pipeline import training_batches
    from hyv_jax.training.loop import resume, train
    from hyv_jax.training.metrics_log import MetricsLog
    from hyv_jax.training.profiling import StepProfiler

    tc = config.training
    workdir = Path(args.workdir)
    if args.init_lora and (args.resume or args.resume_step is not None):
        raise ValueError("--init-lora starts a run; a resumed run takes its adapters from the checkpoint: drop one of them")
    profiler = StepProfiler.parse(args.profile_steps, workdir / "profile") if args.profile_steps else None
    initialize_distributed(config.parallel)
    trainer = build_trainer(config, ParallelPlan.from_config(config.parallel), args.init, args.init_lora, args.data)
    batches = training_batches(args.data, tc.batch_size, rows=trainer.batch_rows, seed=tc.data.shuffle_seed,
                               num_epochs=None if tc.data.num_epochs < 0 else tc.data.num_epochs)
    with TrainCheckpoints(workdir / "checkpoints", keep=tc.checkpoint.keep, async_save=tc.checkpoint.async_save) as checkpoints:
        if args.resume or args.resume_step is not None:
            resumed = resume(trainer, checkpoints, batches, args.resume_step)
            main_print(f"resumed from step {resumed.step} of {checkpoints.directory}"
                       + (f"; the later checkpoints were moved to {resumed.set_aside}" if resumed.set_aside else ""))
        elif steps := checkpoints.steps():
            raise ValueError(f"{workdir}/checkpoints holds steps {steps}: pass --resume to continue, or use a new --workdir")
        log = MetricsLog(workdir / "tensorboard", tc.steps, trainer.step_count) if is_main() else None
        try:
            history = train(trainer, batches, steps=tc.steps, checkpoints=checkpoints, checkpoint_every=tc.checkpoint.every,
                            log=log, log_every=tc.log_every, meta={"config": config.to_json()},
                            echo=tc.log_all_processes, profiler=profiler)
        finally:
            if log:
                log.close()
    written = save_trained(trainer, workdir / "final", use_ema=tc.ema_decay > 0)
    if history:
        main_print(f"step {history[-1]['step']}: loss {history[-1]['loss']:.4f}")
    main_print("wrote " + ", ".join(str(p) for p in written.values()))


def _prepare(args, config) -> None:
    from hyv_jax.convert.vae_checkpoint import restore_vae
    from hyv_jax.training.data_preparation import Buckets, folder_items, parse_resolutions, prepare_dataset, tfds_items
    from hyv_jax.training.procedural_scenes import scene_items

    try:
        from hyv_jax.loading.models import load_text_encoder
    except ImportError as e:
        raise SystemExit(f"the text encoders (hyv_jax.models.text) are not available: {e}") from e
    print(f"loading the VAE from {args.vae}", flush=True)
    vae = restore_vae(args.vae)
    print(f"loading the text encoders from {args.llm_dir or 'random weights'} and {args.clip_dir or 'random weights'}", flush=True)
    text = load_text_encoder(config.text_encoder, llm_dir=args.llm_dir, clip_dir=args.clip_dir, seed=args.text_seed)
    buckets = Buckets(parse_resolutions(args.resolutions), tuple(args.frames))
    if args.input:
        items = folder_items(args.input)
    elif args.procedural:
        (height, width), frames = buckets.resolutions[0], max(buckets.frames)
        items = scene_items(args.procedural, frames=frames, height=height, width=width)
    else:
        name, _, split = args.tfds.partition(":")
        items = tfds_items(name, split or "train", args.tfds_media_key, args.tfds_caption_key, args.tfds_data_dir)
    index = prepare_dataset(items, args.out, vae=vae, text_encoder=text, buckets=buckets, shard_size=args.shard_size)
    for name, info in index["buckets"].items():
        print(f"{name}: {info['count']} clips")


def _train_vae(args, config) -> None:
    import dataclasses
    import functools

    from flax import nnx

    from hyv_jax.convert.converted_model import save_converted
    from hyv_jax.convert.model_state import params_to_numpy
    from hyv_jax.convert.vae_checkpoint import MODEL_KIND, restore_vae
    from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
    from hyv_jax.training.data_preparation import parse_resolutions
    from hyv_jax.training.vae_training import VAELossWeights, VAETrainer, latent_scaling_factor, scene_batches, train_vae

    (height, width), scene_size = parse_resolutions([args.resolution, args.scene_size])
    vae = restore_vae(args.init) if args.init else CausalVideoVAE(VAEConfig.from_mapping(config.vae), rngs=nnx.Rngs(args.seed))
    trainer = VAETrainer(vae, lr=args.lr, decay_steps=args.image_steps + 2 * args.steps, seed=args.seed,
                         weights=VAELossWeights(kl=args.kl_weight, foreground=args.foreground_weight),
                         min_posterior_std=args.min_posterior_std)
    scenes = functools.partial(scene_batches, height=height, width=width, scene_size=scene_size)
    clips = scenes(args.batch_size, frames=args.frames, seed=args.seed)
    images = scenes(args.image_batch_size, frames=1, seed=args.seed + 1)
    train_vae(trainer, clips, args.steps, images=images, image_steps=args.image_steps,
              log_every=max(1, (args.image_steps + args.steps) // 20))
    vae = trainer.model()
    scale = latent_scaling_factor(vae, scenes(args.batch_size, frames=args.frames, seed=args.seed + 2))
    vae_config = dataclasses.replace(vae.config, scaling_factor=scale)
    save_converted(args.out, params_to_numpy(vae), MODEL_KIND, vae_config, "train.py train-vae", vae_config.param_dtype,
                   overwrite=True)  # a trained VAE replaces an earlier one there, never a foreign folder
    print(f"wrote {args.out} (latent scaling factor {scale:.4f})")


def _export_lora(args, config) -> None:
    from hyv_jax.lora.writer import save_lora
    from hyv_jax.parallel.plan import ParallelPlan
    from hyv_jax.parallel.processes import is_main
    from hyv_jax.training.build import build_trainer, with_host_adapters
    from hyv_jax.training.checkpointing import TrainCheckpoints, abstract_like
    from hyv_jax.training.lora_files import export_lora

    if args.alpha is not None and args.format != "kohya":
        raise ValueError(f"--alpha is stored by the kohya format only; the {args.format} format bakes the scale into B")
    config.training.lora.enabled = True
    config.training.caption_dropout = 0.0  # no batch is drawn: the data's negative prompt is not needed
    trainer = build_trainer(config, ParallelPlan.from_config(config.parallel), args.init)
    state, _, _ = TrainCheckpoints(Path(args.workdir) / "checkpoints").restore(abstract_like(trainer.state), args.step, lora=True)
    trainer.state = state
    alpha = config.training.lora.alpha if args.alpha is None else args.alpha
    adapters = export_lora(with_host_adapters(trainer.model()), args.format, alpha if args.format == "kohya" else None)
    if is_main():
        save_lora(args.out, adapters)
        print(f"wrote {args.out} ({args.format})")


def main(argv=None) -> None:
    sys.stdout.reconfigure(line_buffering=True)  # progress lines reach a pod's log file as they happen
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("train", "prepare", "train-vae", "export-lora", "-h", "--help"):
        argv = ["train", *argv]
    args, overrides = parse_with_overrides(_parser(), argv, "training.steps=100")
    config = load_config(args.config, overrides)
    from hyv_jax.compilation_cache import default_cache_dir, enable_compilation_cache

    enable_compilation_cache(default_cache_dir())
    {"train": _train, "prepare": _prepare, "train-vae": _train_vae, "export-lora": _export_lora}[args.command](args, config)


if __name__ == "__main__":
    run_command(main, None, "train.py")
