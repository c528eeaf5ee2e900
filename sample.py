"""Text to video with HunyuanVideo: prompt in, mp4 out (a PNG for --video-length 1).

With no checkpoint flags this runs the tiny model of configs/tiny.py on any machine: the
trained tiny default when hyv_jax/assets/tiny_default holds one (bench/train_tiny_default.py),
else random weights (the video is noise-like; it checks the whole path). With converted checkpoints
(convert_torch_weights.py to-jax --model transformer|vae|llm|clip) it runs the released 13B:

  python sample.py --prompt "A cat walks on the grass, realistic style."
  python sample.py --model-base ckpts/hyv_jax --prompt "A cat walks on the grass, realistic style." \\
      --video-size 544 960 --video-length 129 --infer-steps 50 --seed 42

--model-base DIR means DIR/transformer, DIR/vae, DIR/llm, DIR/clip; the --*-dir flags override
one folder each. Flags left out take the config's `sampling` section (upstream's defaults for
the 13B: 720x1280, 129 frames, 50 steps, shift 7, embedded guidance 6, cfg 1). Any config key
can be overridden as --config.sampling.steps=20 or --config.transformer.attention_impl=xla.
Everything is checked (sizes, frame count, folders, tokenizers, save path) before a model loads.
"""

import argparse
import dataclasses
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from configs import load_config
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.pipeline import ModelPaths
from hyv_jax.sampling.tiny_default import ASSET_DIR, shipped_paths

TINY_CONFIG, RELEASED_CONFIG = "configs/tiny.py", "configs/hunyuan_video_t2v.py"
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_PROMPT = "A cat walks on the grass, realistic style."


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help=f"text prompt (default: {DEFAULT_PROMPT!r})")
    parser.add_argument("--neg-prompt", default=None, help="negative prompt for true CFG (default: upstream's, used when --cfg-scale > 1)")
    parser.add_argument("--video-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="multiples of 16 (13B default 720 1280)")
    parser.add_argument("--video-length", type=int, help="frames, 4k+1 (13B default 129; 1 samples an image)")
    parser.add_argument("--infer-steps", type=int, help="denoising steps (13B default 50)")
    parser.add_argument("--flow-shift", type=float, help="shift of the flow schedule (13B default 7.0)")
    parser.add_argument("--embedded-cfg-scale", type=float, help="embedded (distilled) guidance scale (13B default 6.0)")
    parser.add_argument("--cfg-scale", type=float, help="true classifier-free guidance scale, > 1 turns it on (default 1.0)")
    parser.add_argument("--seed", type=int, default=None, help="video i uses seed + i (default: a random seed, printed)")
    parser.add_argument("--num-videos", type=int, default=1, help="videos for the prompt, sampled as one batch")
    parser.add_argument("--save-path", default="./results", help="folder for the videos (default ./results)")
    parser.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None, help="tiled VAE decode (default on)")
    parser.add_argument("--precision", choices=PRECISIONS, help="transformer dtype (13B default bf16)")
    parser.add_argument("--vae-precision", choices=PRECISIONS, help="VAE dtype (13B default bf16)")
    parser.add_argument("--noise-dtype", choices=("float16", "float32"), help="dtype the initial noise is drawn in (default float16, as upstream)")
    parser.add_argument("--model-base", help="folder holding converted transformer/, vae/, llm/, clip/")
    for name in ModelPaths.__dataclass_fields__:
        parser.add_argument(f"--{name}-dir", help=f"converted {name} folder (overrides --model-base)")
    parser.add_argument("--config", help=f"model config (default: {RELEASED_CONFIG} with checkpoints, else {TINY_CONFIG})")
    args, rest = parser.parse_known_args(argv)
    bad = [a for a in rest if not a.startswith("--config.")]
    if bad:
        parser.error(f"unknown arguments {bad}; config overrides look like --config.sampling.steps=20")
    return parser, args, [a.removeprefix("--config.") for a in rest]


@dataclasses.dataclass(frozen=True)
class Plan:
    config: object
    config_path: str
    paths: ModelPaths
    options: SamplingOptions
    prompt: str
    save_path: Path


def plan(argv) -> Plan:
    """Everything the run needs, checked; loads no model. Raises SystemExit with a message."""
    parser, args, overrides = parse_args(argv)
    try:
        base = Path(args.model_base) if args.model_base else None
        paths = ModelPaths(**{name: getattr(args, f"{name}_dir") or (base / name if base else None) for name in ModelPaths.__dataclass_fields__})
        config_path = args.config or (TINY_CONFIG if len(paths.missing()) == 4 else RELEASED_CONFIG)
        if config_path == TINY_CONFIG and len(paths.missing()) == 4:
            paths = shipped_paths() or paths  # the trained tiny default, when the repository holds one
        config = load_config(config_path, overrides)
        for section, flag in (("transformer", args.precision), ("vae", args.vae_precision)):
            if flag:
                config[section].update(dtype=PRECISIONS[flag], param_dtype=PRECISIONS[flag])
        flags = dict(height=args.video_size and args.video_size[0], width=args.video_size and args.video_size[1], frames=args.video_length,
                     steps=args.infer_steps, flow_shift=args.flow_shift, embedded_guidance=args.embedded_cfg_scale,
                     cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt, noise_dtype=args.noise_dtype, vae_tiling=args.vae_tiling)
        seed = args.seed if args.seed is not None else random.randrange(1_000_000)
        options = dataclasses.replace(SamplingOptions.from_mapping(config.sampling), num_videos=args.num_videos, seed=seed,
                                      **{k: v for k, v in flags.items() if v is not None})
        paths.check(config.get("allow_random_weights", False))
        save_path = writable_folder(Path(args.save_path))
    except (ValueError, KeyError, FileNotFoundError) as error:
        parser.exit(2, f"sample.py: error: {str(error).strip(chr(39) + chr(34))}\n")
    return Plan(config, config_path, paths, options, args.prompt, save_path)


def writable_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"cannot write videos to {folder} ({error.strerror}); pass a writable --save-path") from error
    return folder


def output_name(prompt: str, seed: int, suffix: str) -> str:
    words = re.sub(r"[^\w\- ]+", "", prompt)[:100].strip().replace(" ", "_") or "video"
    return f"{time.strftime('%Y%m%d-%H%M%S')}_seed{seed}_{words}{suffix}"


def main(argv=None) -> list[Path]:
    p = plan(sys.argv[1:] if argv is None else argv)
    from hyv_jax.io.video import write_image, write_video
    from hyv_jax.sampling.pipeline import TextToVideoPipeline

    o = p.options
    print(f"config {p.config_path}: {o.height}x{o.width}, {o.frames} frames, {o.steps} steps, shift {o.flow_shift}, "
          f"embedded guidance {o.embedded_guidance}, cfg {o.cfg_scale}, seed{'s' if o.num_videos > 1 else ''} "
          f"{o.seed}{f'..{o.seed + o.num_videos - 1}' if o.num_videos > 1 else ''}")
    if p.paths == shipped_paths():
        print(f"the tiny default trained on procedural scenes ({ASSET_DIR}; text encoders random, seeded): "
              "try --prompt 'a red circle moving left'")
    elif p.paths.missing():
        print(f"RANDOM WEIGHTS for {', '.join(p.paths.missing())} (no checkpoint given): the output shows the pipeline works, not a real video")
    pipeline = TextToVideoPipeline.from_config(p.config, p.paths)
    start = time.perf_counter()
    videos = pipeline(p.prompt, o)
    print(f"sampled {o.num_videos} video(s) in {time.perf_counter() - start:.1f} s")
    written = []
    for frames, seed in zip(videos.frames, videos.seeds, strict=True):
        if o.frames == 1:
            written.append(write_image(p.save_path / output_name(p.prompt, seed, ".png"), frames[0]))
        else:
            written.append(write_video(p.save_path / output_name(p.prompt, seed, ".mp4"), frames))
        print(f"saved {written[-1]}")
    return written


if __name__ == "__main__":
    main()
