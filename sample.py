"""Text to video with HunyuanVideo: prompt in, mp4 out (a PNG for --video-length 1).

With no checkpoint flags this runs a tiny model on any machine: the trained tiny default
(configs/tiny_default.py, weights in hyv_jax/assets/tiny_default, from bench/train_tiny_default.py)
when the repository holds it, else configs/tiny.py with random weights (the video is noise-like;
it checks the whole path). With converted checkpoints
(convert_torch_weights.py to-jax --model transformer|vae|llm|clip) it runs the released 13B:

  python sample.py --prompt "A cat walks on the grass, realistic style."
  python sample.py --model-base ckpts/hyv_jax --prompt "A cat walks on the grass, realistic style." \\
      --video-size 544 960 --video-length 129 --infer-steps 50 --seed 42

On several devices (GPUs of one machine, or every process of a multi-host job running this same
command) the official flags split the video's tokens over --ulysses-degree x --ring-degree
devices; `--config.parallel.mesh.data|fsdp|tensor` split the batch and the weights:

  python sample.py --model-base ckpts/hyv_jax --prompt "..." --ulysses-degree 8 --ring-degree 1

--model-base DIR means DIR/transformer, DIR/vae, DIR/llm, DIR/clip; the --*-dir flags override
one folder each. Flags left out take the config's `sampling` section (upstream's defaults for
the 13B: 720x1280, 129 frames, 50 steps, shift 7, embedded guidance 6, cfg 1). Any config key
can be overridden as --config.sampling.steps=20 or --config.transformer.attention_impl=xla.
Everything is checked (sizes, frame count, folders, tokenizers, save path) before a model loads.
"""

import argparse
import contextlib
import dataclasses
import random
import re
import sys
import tempfile
import time
from pathlib import Path

from configs import load_config
from configs.command_line import add_debug_flag, parse_with_overrides, run_command
from hyv_jax.compilation_cache import DEFAULT_DIR, ENV, default_cache_dir, enable_compilation_cache
from hyv_jax.loading.paths import CustomPaths, ModelPaths
from hyv_jax.loading.shipped import ASSET_DIR, shipped_paths
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.step_cache import STEP_CACHE_STEPS

TINY_CONFIG, TINY_DEFAULT_CONFIG, RELEASED_CONFIG = "configs/tiny.py", "configs/tiny_default.py", "configs/hunyuan_video_t2v.py"
TINY_CUSTOM_CONFIG, CUSTOM_CONFIG = "configs/tiny_custom.py", "configs/hunyuan_custom.py"
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_PROMPT = "A cat walks on the grass, realistic style."


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", help=f"text prompt (default: the config's default_prompt, else {DEFAULT_PROMPT!r})")
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
    parser.add_argument("--first-block-cache", type=float, metavar="THRESHOLD",
                        help="skip the later blocks on steps whose first block output changed less than this (relative; "
                             "0 off, the default; about 0.05-0.1: faster at some cost in fidelity)")
    parser.add_argument("--compile-cache", default=default_cache_dir(), metavar="DIR",
                        help=f"keep compiled programs here for the next run ('' : off; default ${ENV} or {DEFAULT_DIR})")
    mesh = parser.add_argument_group("several devices (the config's `parallel` section; --config.parallel.mesh.data=2 ...)")
    mesh.add_argument("--ulysses-degree", type=int, help="devices that split the attention heads of the joint sequence "
                      "(Ulysses; must divide the model's heads, 24 for the 13B); times --ring-degree devices of context parallelism")
    mesh.add_argument("--ring-degree", type=int, help="devices that pass key/value blocks around a ring (ring attention)")
    mesh.add_argument("--coordinator-address", help="multi-host: HOST:PORT of process 0 (every process runs this command); "
                      "default: from the environment (JAX_COORDINATOR_ADDRESS, SLURM, Cloud TPU)")
    mesh.add_argument("--num-processes", type=int, help="multi-host: how many processes")
    mesh.add_argument("--process-id", type=int, help="multi-host: this process's index")
    parser.add_argument("--model-base", help="folder holding converted transformer/, vae/, llm/, clip/")
    for name in ModelPaths.__dataclass_fields__:
        parser.add_argument(f"--{name}-dir", help=f"converted {name} folder (overrides --model-base)")
    custom = parser.add_argument_group("HunyuanCustom (a --ref-image selects it; identity, audio and editing checkpoints)")
    custom.add_argument("--ref-image", action="append", help="reference image of the subject (repeat for experimental multi-subject)")
    custom.add_argument("--subject-name", default="object", help="the name in the prompt suffix 'The {name} looks like<image>'")
    custom.add_argument("--input-audio", help="speech driving the video (audio checkpoint); muxed into the mp4")
    custom.add_argument("--audio-strength", type=float, default=1.0, help="scale of the audio cross-attention (default 1.0)")
    custom.add_argument("--input-video", help="video to edit (editing checkpoint); its frames set --video-length")
    custom.add_argument("--mask-video", help="mask video of the region to generate, same frame count as --input-video")
    custom.add_argument("--step-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="upstream's step cache at 30 steps (8 steps reuse the last single block's input; default on)")
    custom.add_argument("--expand-scale", type=int, default=0, help="grow (>0) or shrink (<0) the mask by this kernel size")
    for name in ("llava", "whisper"):
        custom.add_argument(f"--{name}-dir", help=f"Hugging Face folder of HunyuanCustom's {name}")
    parser.add_argument("--config", help=f"model config (default: {RELEASED_CONFIG} with checkpoints, else {TINY_DEFAULT_CONFIG} "
                        f"with the shipped weights, or {TINY_CONFIG} with random weights)")
    add_debug_flag(parser)
    args, overrides = parse_with_overrides(parser, argv, "sampling.steps=20")
    return parser, args, overrides


@dataclasses.dataclass(frozen=True)
class Plan:
    config: object
    config_path: str
    paths: ModelPaths
    options: SamplingOptions
    prompt: str
    save_path: Path
    custom: object = None  # CustomInputs in HunyuanCustom mode
    step_cache: bool = True
    compile_cache: str = ""
    notes: tuple[str, ...] = ()  # about flags that do less than one might think (printed by main)


def plan(argv) -> Plan:
    """Everything the run needs, checked; loads no model. Raises SystemExit with a message."""
    parser, args, overrides = parse_args(argv)
    custom = bool(args.ref_image or args.input_audio or args.input_video or args.mask_video)
    try:
        base = Path(args.model_base) if args.model_base else None
        paths = ModelPaths(**{name: getattr(args, f"{name}_dir") or (base / name if base else None) for name in ModelPaths.__dataclass_fields__})
        no_checkpoints = len(paths.missing()) == 4
        if custom:
            paths = CustomPaths(**dataclasses.asdict(paths), llava=args.llava_dir, whisper=args.whisper_dir)
            config_path = args.config or (TINY_CUSTOM_CONFIG if no_checkpoints else CUSTOM_CONFIG)
        else:
            # no checkpoints: the trained tiny default when the repository holds one, else random weights
            shipped = shipped_paths()
            config_path = args.config or ((TINY_DEFAULT_CONFIG if shipped else TINY_CONFIG) if no_checkpoints else RELEASED_CONFIG)
            if shipped and no_checkpoints and Path(config_path).name == Path(TINY_DEFAULT_CONFIG).name:
                paths = shipped
        config = load_config(config_path, overrides)
        for section, flag in (("transformer", args.precision), ("vae", args.vae_precision)):
            if flag:
                config[section].update(dtype=PRECISIONS[flag], param_dtype=PRECISIONS[flag])
        set_parallel(config, args)
        flags = dict(height=args.video_size and args.video_size[0], width=args.video_size and args.video_size[1], frames=args.video_length,
                     steps=args.infer_steps, flow_shift=args.flow_shift, embedded_guidance=args.embedded_cfg_scale,
                     cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt, noise_dtype=args.noise_dtype, vae_tiling=args.vae_tiling,
                     first_block_cache=args.first_block_cache)
        seed = args.seed if args.seed is not None else config.sampling.get("seed", random.randrange(1_000_000))
        sampling = config.sampling
        if custom and args.input_video:  # the editing checkpoint's schedule unless flags say otherwise
            sampling = dict(sampling.to_dict(), **config.editing_sampling.to_dict())
        options = dataclasses.replace(SamplingOptions.from_mapping(sampling), num_videos=args.num_videos, seed=seed,
                                      **{k: v for k, v in flags.items() if v is not None})
        inputs, notes = None, []
        if args.neg_prompt is not None and not options.true_cfg:
            notes.append(f"--neg-prompt is unused: the negative prompt only enters with true CFG, --cfg-scale > 1 "
                         f"(now {options.cfg_scale})")
        if custom:
            if options.first_block_cache and args.step_cache and options.steps == STEP_CACHE_STEPS:
                raise ValueError(f"--first-block-cache and the step cache (on at {STEP_CACHE_STEPS} steps) do not combine: "
                                 "add --no-step-cache, or drop --first-block-cache")
            paths.check(config.get("allow_random_weights", False), audio=bool(args.input_audio))
            inputs, options = read_custom_inputs(args, config, paths, options, notes)
        else:
            paths.check(config.get("allow_random_weights", False))
        save_path = writable_folder(Path(args.save_path))
        if args.compile_cache:
            writable_folder(Path(args.compile_cache), "compiled programs", "pass a writable --compile-cache, or '' to turn it off")
    except (ValueError, KeyError, FileNotFoundError) as error:
        parser.exit(2, f"sample.py: error: {str(error).strip(chr(39) + chr(34))}\n")
    prompt = args.prompt if args.prompt is not None else config.get("default_prompt", DEFAULT_PROMPT)
    return Plan(config, config_path, paths, options, prompt, save_path, inputs, args.step_cache, args.compile_cache, tuple(notes))


def set_parallel(config, args) -> None:
    """The official context-parallel flags and the multi-host ones into the config's `parallel`
    section (the mesh itself is checked against the devices once JAX has started)."""
    from hyv_jax.parallel.plan import set_context_degrees

    if args.ulysses_degree is not None or args.ring_degree is not None:
        set_context_degrees(config.parallel, *(1 if d is None else d for d in (args.ulysses_degree, args.ring_degree)),
                            heads=config.transformer.heads)
    given = {k: v for k, v in (("coordinator_address", args.coordinator_address), ("num_processes", args.num_processes),
                               ("process_id", args.process_id)) if v is not None}
    if given:
        config.parallel.update(distributed=True, **given)


def read_custom_inputs(args, config, paths, options: SamplingOptions, notes: list[str]):
    """Decodes and checks the HunyuanCustom inputs (images, audio, video and mask) against the
    model's modules; an input video sets the frame count. Loads no model."""
    from hyv_jax.convert.orbax_io import read_info
    from hyv_jax.io.image_size import check_image_size
    from hyv_jax.models.custom.audio_prompts import FPS as AUDIO_FPS
    from hyv_jax.models.custom.audio_prompts import SAMPLE_RATE, audio_frames, load_audio
    from hyv_jax.models.custom.mask_video import process_mask
    from hyv_jax.models.custom.reference_image import load_image
    from hyv_jax.models.custom.transformer import CustomTransformerConfig
    from hyv_jax.sampling.custom_pipeline import CustomInputs, resize_frames
    from hyv_jax.sampling.options import require_finite

    if not args.ref_image:
        raise ValueError("HunyuanCustom modes need --ref-image (the subject to keep)")
    strength = require_finite("--audio-strength", args.audio_strength)
    # the converted checkpoint says which modules it has; without one, the config does
    stored = read_info(paths.transformer)["config"] if paths.transformer else config.transformer
    model = CustomTransformerConfig.from_mapping(stored)
    for path in args.ref_image:  # from the header, before anything is decoded
        check_image_size(path, "--ref-image")
    images = [load_image(path) for path in args.ref_image]
    audio = load_audio(args.input_audio) if args.input_audio else None
    video = mask = None
    if args.input_video or args.mask_video:
        if not (args.input_video and args.mask_video):
            raise ValueError("editing needs both --input-video and --mask-video")
        video, mask_frames = (_read_video(args.input_video), _read_video(args.mask_video))
        if video.shape[:3] != mask_frames.shape[:3]:
            raise ValueError(f"--mask-video {mask_frames.shape[:3]} and --input-video {video.shape[:3]} (frames, height, width) "
                             "must have the same frame count and size")
        options = dataclasses.replace(options, frames=len(video))  # checks 4k+1
        largest = max(options.height, options.width)
        if abs(args.expand_scale) > largest:
            raise ValueError(f"--expand-scale {args.expand_scale} is a kernel larger than the video ({options.height}x"
                             f"{options.width}): pass at most {largest} in size (a few pixels to a few dozen is usual)")
        video = resize_frames(video, options.height, options.width)
        mask = process_mask(mask_frames, options.height, options.width, args.expand_scale)
    if audio is not None:
        covered = audio_frames(len(audio), options.frames, f"--input-audio {args.input_audio}")
        if covered < options.frames:
            notes.append(f"--input-audio lasts {len(audio) / SAMPLE_RATE:.2f} s: it drives the first {covered} of {options.frames} "
                         f"frames ({AUDIO_FPS} fps), the rest get no audio, as upstream")
    inputs = CustomInputs(images, audio, strength, video, mask, args.subject_name)
    inputs.check(model, options)
    return inputs, options


def _read_video(path):
    from hyv_jax.io.video import read_video

    try:
        return read_video(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read video {path}: {error}; pass an mp4/webm/mov file PyAV can decode") from error


def writable_folder(folder: Path, what: str = "videos", fix: str = "pass a writable --save-path") -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ValueError(f"cannot write {what} to {folder} ({error.strerror}); {fix}") from error
    return folder


def output_name(prompt: str, seed: int, suffix: str) -> str:
    words = re.sub(r"[^\w\- ]+", "", prompt)[:100].strip().replace(" ", "_") or "video"
    return f"{time.strftime('%Y%m%d-%H%M%S')}_seed{seed}_{words}{suffix}"


def main(argv=None) -> list[Path]:
    p = plan(sys.argv[1:] if argv is None else argv)
    import jax

    from hyv_jax.parallel.devices import cpu_fallback_warning, device_summary
    from hyv_jax.parallel.mesh import initialize_distributed
    from hyv_jax.parallel.plan import plan_if_parallel

    initialize_distributed(p.config.parallel)  # before any other use of JAX
    enable_compilation_cache(p.compile_cache)
    lead = jax.process_index() == 0  # only process 0 prints and writes
    say = print if lead else lambda *a, **k: None
    if lead and (warning := cpu_fallback_warning()):
        print(warning, file=sys.stderr)
    parallel = plan_if_parallel(p.config.parallel)
    mesh = "one device" if parallel is None else " x ".join(f"{k} {v}" for k, v in parallel.mesh.shape.items()) + \
        f", context strategy {parallel.context_strategy}"
    say(f"{device_summary()}; {mesh}")

    from hyv_jax.io.video import FPS
    from hyv_jax.sampling.pipeline import TextToVideoPipeline

    o = p.options
    for note in p.notes:
        say(f"sample.py: note: {note}", file=sys.stderr)
    say(f"config {p.config_path}: {o.height}x{o.width}, {o.frames} frames, {o.steps} steps, shift {o.flow_shift}, "
        f"embedded guidance {o.embedded_guidance}, cfg {o.cfg_scale}, seed{'s' if o.num_videos > 1 else ''} "
        f"{o.seed}{f'..{o.seed + o.num_videos - 1}' if o.num_videos > 1 else ''}")
    if p.paths == shipped_paths():
        from hyv_jax.training.procedural_scenes import COLORS, DIRECTIONS, SHAPES

        say(f"the tiny default trained on procedural scenes ({ASSET_DIR}; text encoders random, seeded): it draws "
            f"'a COLOUR SHAPE moving DIRECTION' with COLOUR in {'/'.join(COLORS)}, SHAPE in {'/'.join(SHAPES)}, "
            f"DIRECTION in {'/'.join(DIRECTIONS)}")
    elif p.paths.missing():
        say(f"RANDOM WEIGHTS for {', '.join(p.paths.missing())} (no checkpoint given): the output shows the pipeline works, not a real video")
    fps, sound = FPS, {}
    start = time.perf_counter()
    with out_of_memory_advice(p):
        if p.custom is not None:
            from hyv_jax.sampling.custom_pipeline import FPS as CUSTOM_FPS
            from hyv_jax.sampling.custom_pipeline import SAMPLE_RATE, CustomVideoPipeline
            pipeline = CustomVideoPipeline.from_config(p.config, p.paths, audio=p.custom.audio is not None, plan=parallel)
            fps, sound = CUSTOM_FPS, ({} if p.custom.audio is None else dict(audio=p.custom.audio, sample_rate=SAMPLE_RATE))
            videos = pipeline(p.prompt, p.custom, o, step_cache=p.step_cache, progress=lead)
        else:
            videos = TextToVideoPipeline.from_config(p.config, p.paths, plan=parallel)(p.prompt, o, progress=lead)
    say(f"sampled {o.num_videos} video(s) in {time.perf_counter() - start:.1f} s")
    if videos.full_steps < o.steps:
        say(f"cache: {videos.full_steps} of {o.steps} steps ran every block")
    return save_videos(p, videos, fps, sound) if lead else []


@contextlib.contextmanager
def out_of_memory_advice(p: Plan):
    """A device or host out of memory while loading or sampling becomes one line of advice."""
    import jax

    try:
        yield
    except (jax.errors.JaxRuntimeError, MemoryError) as error:
        if isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" not in str(error):
            raise
        o = p.options
        what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MemoryError(f"out of memory sampling {o.num_videos} video(s) of {o.height}x{o.width}x{o.frames} with "
                          f"{p.config_path} ({what}); use a smaller --video-size or --video-length, fewer --num-videos, "
                          f"--precision bf16, or split the video over more devices (--ulysses-degree, --ring-degree)") from None


def save_videos(p: Plan, videos, fps: int, sound: dict) -> list[Path]:
    """Writes each video (never over another file; a taken name gets _2, ...). When a write
    fails, the frames of it and of the videos not yet written are kept as .npz, in --save-path
    or else the system's temporary folder, and the error says where."""
    from hyv_jax.io.video import keep_frames, write_image, write_video

    written, items = [], list(zip(videos.frames, videos.seeds, strict=True))
    for i, (frames, seed) in enumerate(items):
        try:
            if p.options.frames == 1:
                written.append(write_image(p.save_path / output_name(p.prompt, seed, ".png"), frames[0]))
            else:
                written.append(write_video(p.save_path / output_name(p.prompt, seed, ".mp4"), frames, fps, **sound))
        except OSError as error:
            folders = [p.save_path, Path(tempfile.gettempdir())]
            kept = [keep_frames(f, output_name(p.prompt, s, ""), folders, fps=fps, **sound) for f, s in items[i:]]
            reason = f"could not write video {i + 1} of {len(items)} to {p.save_path} ({error.strerror or error})"
            if None in kept:
                raise OSError(f"{reason}; its frames could not be kept in {' or '.join(map(str, folders))} either: they are "
                              f"lost{'; written before: ' + ', '.join(map(str, written)) if written else ''}") from error
            raise OSError(f"{reason}; the frames are kept in {', '.join(map(str, kept))}: once there is room, write them with "
                          f"python -c \"import numpy as np; from hyv_jax.io.video import write_video; "
                          f"write_video('video.mp4', **np.load('{kept[0]}'))\"") from error
        print(f"saved {written[-1]}")
    return written


if __name__ == "__main__":
    run_command(main, None, "sample.py")
