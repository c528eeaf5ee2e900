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
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.paths import CustomPaths, ModelPaths
from hyv_jax.loading.shipped import ASSET_DIR, shipped_paths
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.residency import RESIDENCY_CHOICES
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
    memory = parser.add_argument_group("memory (the transformer's weights; README: Memory)")
    memory.add_argument("--use-fp8", action="store_true",
                        help="keep the transformer blocks' linear weights in float8_e4m3fn with one scale per tensor (upstream's "
                             "--use-fp8 and its rounding), dequantised one block at a time: about half the weight memory")
    memory.add_argument("--use-cpu-offload", "--cpu-offload", dest="cpu_offload", action="store_true",
                        help="keep the transformer's double and single blocks in pinned host memory and copy each block to the "
                             "device when the scan runs it (HunyuanVideo's --use-cpu-offload, HunyuanCustom's --cpu-offload)")
    memory.add_argument("--residency", choices=RESIDENCY_CHOICES, default="auto",
                        help="resident: the transformer stays placed once loaded; sequential: it is placed after the text "
                             "encoders ran and freed before the VAE decodes; auto (default): resident where the memory plan "
                             "fits the device, else sequential")
    memory.add_argument("--dry-run", action="store_true",
                        help="check everything, load no weights, compile the run's programs abstractly and print the memory "
                             "plan per device (last line: one JSON object)")
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
    memory: MemoryMode = MemoryMode()
    residency: str = "auto"
    dry_run: bool = False


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
        inputs = None
        if custom:
            if options.first_block_cache and args.step_cache and options.steps == STEP_CACHE_STEPS:
                raise ValueError(f"--first-block-cache and the step cache (on at {STEP_CACHE_STEPS} steps) do not combine: "
                                 "add --no-step-cache, or drop --first-block-cache")
            inputs, options = read_custom_inputs(args, config, paths, options)
            paths.check(config.get("allow_random_weights", False), audio=inputs.audio is not None)
        else:
            paths.check(config.get("allow_random_weights", False) or args.dry_run)  # a dry run loads no weights
        if custom and args.dry_run:
            raise ValueError("--dry-run plans text-to-video runs; leave out the HunyuanCustom inputs to plan the base model")
        save_path = writable_folder(Path(args.save_path))
        if args.compile_cache:
            writable_folder(Path(args.compile_cache), "compiled programs", "pass a writable --compile-cache, or '' to turn it off")
    except (ValueError, KeyError, FileNotFoundError) as error:
        parser.exit(2, f"sample.py: error: {str(error).strip(chr(39) + chr(34))}\n")
    prompt = args.prompt if args.prompt is not None else config.get("default_prompt", DEFAULT_PROMPT)
    return Plan(config, config_path, paths, options, prompt, save_path, inputs, args.step_cache, args.compile_cache,
                MemoryMode(fp8=args.use_fp8, offload=args.cpu_offload), args.residency, args.dry_run)


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


def read_custom_inputs(args, config, paths, options: SamplingOptions):
    """Decodes and checks the HunyuanCustom inputs (images, audio, video and mask) against the
    model's modules; an input video sets the frame count. Loads no model."""
    from hyv_jax.convert.orbax_io import read_info
    from hyv_jax.models.custom.audio_prompts import load_audio
    from hyv_jax.models.custom.mask_video import process_mask
    from hyv_jax.models.custom.reference_image import load_image
    from hyv_jax.models.custom.transformer import CustomTransformerConfig
    from hyv_jax.sampling.custom_pipeline import CustomInputs, resize_frames

    if not args.ref_image:
        raise ValueError("HunyuanCustom modes need --ref-image (the subject to keep)")
    # the converted checkpoint says which modules it has; without one, the config does
    stored = read_info(paths.transformer)["config"] if paths.transformer else config.transformer
    model = CustomTransformerConfig.from_mapping(stored)
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
        video = resize_frames(video, options.height, options.width)
        mask = process_mask(mask_frames, options.height, options.width, args.expand_scale)
    inputs = CustomInputs(images, audio, args.audio_strength, video, mask, args.subject_name)
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


def planned_residency(p: Plan, parallel, say) -> str:
    """The residency to run with. A dry run prints the memory plan (its last line one JSON
    object); where the device reports its memory, the plan picks `auto`'s residency and a run
    that cannot fit is refused (ValueError) before anything loads."""
    import json

    from hyv_jax.sampling.memory_plan import choose_residency, device_capacity, plan_memory

    capacity = device_capacity()
    if p.custom is not None or not (p.dry_run or capacity is not None):
        return "resident" if p.residency == "auto" else p.residency
    plan = choose_residency(plan_memory(p.config, p.options, parallel=parallel, memory=p.memory, text_length=text_tokens(p),
                                        capacity=capacity), p.residency)
    if p.dry_run:
        for line in plan.lines():
            say(line)
        say(json.dumps(plan.summary()))
    else:
        peak, phase = plan.peak
        say(f"memory: weights {plan.mode}, residency {plan.residency}; planned peak {peak / 2**30:.1f} GiB per device "
            f"({phase}) of {capacity / 2**30:.1f} GiB")
    return plan.residency


def text_tokens(p: Plan) -> int | None:
    """LLM tokens after the template crop, counted with the run's tokenizer where there is one
    without weights to load (None: the plan takes upstream's crop)."""
    from hyv_jax.loading.models import load_text_encoder

    try:
        encoder = load_text_encoder(p.config.text_encoder, llm_dir=p.paths.llm, clip_dir=p.paths.clip)
    except ValueError:  # no tokenizer: neither a converted LLM folder nor shipped ones
        return None
    return encoder.llm_tokenizer.max_length - encoder.crops["image" if p.options.frames == 1 else "video"]


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

    from hyv_jax.io.video import FPS, write_image, write_video
    from hyv_jax.sampling.pipeline import TextToVideoPipeline

    o = p.options
    say(f"config {p.config_path}: {o.height}x{o.width}, {o.frames} frames, {o.steps} steps, shift {o.flow_shift}, "
        f"embedded guidance {o.embedded_guidance}, cfg {o.cfg_scale}, seed{'s' if o.num_videos > 1 else ''} "
        f"{o.seed}{f'..{o.seed + o.num_videos - 1}' if o.num_videos > 1 else ''}")
    if p.paths == shipped_paths():
        from hyv_jax.training.procedural_scenes import COLORS, DIRECTIONS, SHAPES

        say(f"the tiny default trained on procedural scenes ({ASSET_DIR}; text encoders random, seeded): it draws "
            f"'a COLOUR SHAPE moving DIRECTION' with COLOUR in {'/'.join(COLORS)}, SHAPE in {'/'.join(SHAPES)}, "
            f"DIRECTION in {'/'.join(DIRECTIONS)}")
    elif p.paths.missing() and not p.dry_run:
        say(f"RANDOM WEIGHTS for {', '.join(p.paths.missing())} (no checkpoint given): the output shows the pipeline works, not a real video")
    residency = planned_residency(p, parallel, say)
    if p.dry_run:
        return []
    fps, audio, sample_rate = FPS, None, None
    if p.custom is not None:
        from hyv_jax.sampling.custom_pipeline import FPS as CUSTOM_FPS
        from hyv_jax.sampling.custom_pipeline import SAMPLE_RATE, CustomVideoPipeline
        pipeline = CustomVideoPipeline.from_config(p.config, p.paths, audio=p.custom.audio is not None, plan=parallel,
                                                   memory=p.memory, residency=residency)
        fps, audio, sample_rate = CUSTOM_FPS, p.custom.audio, SAMPLE_RATE
        run = lambda: pipeline(p.prompt, p.custom, o, step_cache=p.step_cache, progress=lead)  # noqa: E731
    else:
        pipeline = TextToVideoPipeline.from_config(p.config, p.paths, plan=parallel, memory=p.memory, residency=residency)
        run = lambda: pipeline(p.prompt, o, progress=lead)  # noqa: E731
    start = time.perf_counter()
    videos = run()
    say(f"sampled {o.num_videos} video(s) in {time.perf_counter() - start:.1f} s")
    if videos.full_steps < o.steps:
        say(f"cache: {videos.full_steps} of {o.steps} steps ran every block")
    if not lead:
        return []
    written = []
    for frames, seed in zip(videos.frames, videos.seeds, strict=True):
        if o.frames == 1:
            written.append(write_image(p.save_path / output_name(p.prompt, seed, ".png"), frames[0]))
        else:
            written.append(write_video(p.save_path / output_name(p.prompt, seed, ".mp4"), frames, fps,
                                       **({} if audio is None else dict(audio=audio, sample_rate=sample_rate))))
        print(f"saved {written[-1]}")
    return written


if __name__ == "__main__":
    run_command(main, None, "sample.py")
