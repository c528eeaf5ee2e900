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

Hunyuan-DiT text to image (a config whose `pipeline` is "hunyuan_dit" selects it; upstream's
sample_t2i.py flags and defaults: 1024x1024, DDPM, 100 steps, cfg 6, seed 42; PNGs out):

  python sample.py --config configs/hunyuan_dit.py --model-base ckpts/jax_dit --prompt "一只小猫" \\
      --image-size 1024 1024 --infer-steps 100 --sampler ddpm --cfg-scale 6 --seed 42
  python sample.py --config configs/tiny_hunyuan_dit.py    # random weights, the whole path on a CPU

--model-base DIR means DIR/transformer, DIR/vae, DIR/llm, DIR/clip (Hunyuan-DiT: DIR/transformer,
DIR/vae, DIR/bert, DIR/mt5); the --*-dir flags override one folder each. Flags left out take the
config's `sampling` section (upstream's defaults for the 13B: 720x1280, 129 frames, 50 steps,
shift 7, embedded guidance 6, cfg 1). Any config key can be overridden as
--config.sampling.steps=20 or --config.transformer.attention_impl=xla.
--lora PATH[:SCALE] (repeatable) merges LoRA files of any circulating format into the
transformer's weights once they are loaded; several add up:

  python sample.py --model-base ckpts/hyv_jax --prompt "..." --lora style.safetensors:0.8 --lora motion.safetensors

Everything is checked (sizes, frame count, folders, tokenizers, LoRA files, save path) before a model loads.
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
from configs.command_line import add_debug_flag, exit_at_once, parse_with_overrides, run_command
from hyv_jax.compilation_cache import DEFAULT_DIR, ENV, default_cache_dir, enable_compilation_cache
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.paths import CustomPaths, DiTPaths, ModelPaths
from hyv_jax.loading.shipped import ASSET_DIR, shipped_paths
from hyv_jax.sampling.ddpm_solvers import SOLVERS
from hyv_jax.sampling.hunyuan_dit_options import ImageSamplingOptions
from hyv_jax.sampling.noise import NOISE_DTYPES
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.residency import RESIDENCY_CHOICES
from hyv_jax.sampling.sizes import editing_frames, official_size
from hyv_jax.sampling.step_cache import STEP_CACHE_STEPS

TINY_CONFIG, TINY_DEFAULT_CONFIG, RELEASED_CONFIG = "configs/tiny.py", "configs/tiny_default.py", "configs/hunyuan_video_t2v.py"
TINY_CUSTOM_CONFIG, CUSTOM_CONFIG = "configs/tiny_custom.py", "configs/hunyuan_custom.py"
DIT_CONFIG, DIT_V1_1_CONFIG, TINY_DIT_CONFIG = "configs/hunyuan_dit.py", "configs/hunyuan_dit_v1_1.py", "configs/tiny_hunyuan_dit.py"
IMAGE_PIPELINE = "hunyuan_dit"
# flags of one mode only (their defaults are None), refused in the other
IMAGE_FLAGS = ("image_size", "sampler", "negative", "batch_size", "size_cond", "resolution_binning", "bert_dir", "mt5_dir")
VIDEO_FLAGS = ("video_size", "video_length", "flow_shift", "embedded_cfg_scale", "neg_prompt", "vae_tiling", "noise_dtype",
               "first_block_cache", "ulysses_degree", "ring_degree", "llm_dir", "clip_dir", "ref_image", "input_audio",
               "input_video", "mask_video", "llava_dir", "whisper_dir", "lora", "text_encoder_precision", "text_encoder_precision_2",
               "fps", "input_json")
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
DEFAULT_PROMPT = "A cat walks on the grass, realistic style."


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", help=f"text prompt (default: the config's default_prompt, else {DEFAULT_PROMPT!r})")
    parser.add_argument("--neg-prompt", default=None, help="negative prompt for true CFG (default: upstream's, used when --cfg-scale > 1; "
                        "text-to-video replaces an empty one by it, as upstream)")
    parser.add_argument("--add-pos-prompt", default="", help="text put before the prompt (and each --input-json item's), as upstream")
    parser.add_argument("--add-neg-prompt", default="", help="text put before the negative prompt, as upstream")
    parser.add_argument("--video-size", type=int, nargs="+", metavar="SIZE",
                        help="HEIGHT WIDTH, or one value for a square; rounded up to multiples of 16 as upstream (13B default "
                             "720 1280; editing: the input video's size)")
    parser.add_argument("--video-length", type=int, help="frames, 4k+1 (13B default 129; 1 samples an image)")
    parser.add_argument("--infer-steps", type=int, help="denoising steps (13B default 50)")
    parser.add_argument("--flow-shift", type=float, help="shift of the flow schedule (13B default 7.0)")
    parser.add_argument("--embedded-cfg-scale", type=float, help="embedded (distilled) guidance scale (13B default 6.0)")
    parser.add_argument("--cfg-scale", type=float, help="true classifier-free guidance scale, > 1 turns it on (default 1.0)")
    parser.add_argument("--seed", type=int, default=None, help="video i uses seed + i (default: a random seed, printed)")
    parser.add_argument("--num-videos", type=int, default=1, help="videos for the prompt, sampled as one batch")
    parser.add_argument("--save-path", default="./results", help="folder for the videos (default ./results)")
    parser.add_argument("--save-path-suffix", default="", help="write to <save-path>_<suffix> instead (upstream's)")
    parser.add_argument("--fps", type=int, help="frame rate of the mp4 (default 24; HunyuanCustom 25)")
    parser.add_argument("--vae-tiling", action=argparse.BooleanOptionalAction, default=None, help="tiled VAE decode (default on)")
    parser.add_argument("--precision", choices=PRECISIONS, help="transformer dtype (13B default bf16)")
    parser.add_argument("--vae-precision", choices=PRECISIONS, help="VAE dtype (13B default fp16, as upstream)")
    parser.add_argument("--text-encoder-precision", choices=PRECISIONS,
                        help="LLM and LLaVA (with its vision tower) dtype, and the initial noise's as upstream (13B default fp16)")
    parser.add_argument("--text-encoder-precision-2", choices=PRECISIONS, help="CLIP dtype (13B default fp16)")
    parser.add_argument("--noise-dtype", choices=NOISE_DTYPES,
                        help="dtype the initial noise is rounded to (default: the text encoder's, float16, as upstream)")
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
                        help="keep the transformer's double and single blocks in pinned host memory and stream them to the "
                             "device one block ahead of use (HunyuanVideo's --use-cpu-offload, HunyuanCustom's --cpu-offload)")
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
    lora = parser.add_argument_group("LoRA (merged into the transformer's weights once they are loaded)")
    lora.add_argument("--lora", action="append", type=lora_spec, metavar="PATH[:SCALE]",
                      help="a LoRA file (diffusers/PEFT, original transformer./diffusion_model. keys, kohya/musubi, ComfyUI) "
                           "and its strength (default 1.0); repeat to add several")
    lora.add_argument("--lora-skip-unknown", action="store_true",
                      help="skip LoRA keys that map to no parameter of the model, with a warning naming each (default: an error)")
    parser.add_argument("--model-base", help="folder holding converted transformer/, vae/, llm/, clip/")
    for name in ModelPaths.__dataclass_fields__:
        parser.add_argument(f"--{name}-dir", help=f"converted {name} folder (overrides --model-base)")
    custom = parser.add_argument_group("HunyuanCustom (a --ref-image selects it; identity, audio and editing checkpoints)")
    custom.add_argument("--ref-image", action="append", help="reference image of the subject (repeat for experimental multi-subject)")
    custom.add_argument("--subject-name", default="object", help="the name in the prompt suffix 'The {name} looks like<image>'")
    custom.add_argument("--input-audio", help="speech driving the video (audio checkpoint); muxed into the mp4")
    custom.add_argument("--audio-strength", type=float, default=1.0, help="scale of the audio cross-attention (default 1.0)")
    custom.add_argument("--input-video", help="video to edit (editing checkpoint), at its own size (rounded up to 16) unless "
                        "--video-size; min(its frames, the mask's) read, the largest 4k+1 of them produced, as upstream")
    custom.add_argument("--mask-video", help="mask video of the region to generate (resized to the input video's size)")
    custom.add_argument("--step-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="upstream's step cache at 30 steps (8 steps reuse the last single block's input; default on)")
    custom.add_argument("--ip-cfg-scale", type=float, default=0.0,
                        help="image CFG (upstream's): a third branch with the reference against a white one, its scale "
                             "falling from this to 1 over the steps; identity mode with --cfg-scale > 1 (default 0: off)")
    custom.add_argument("--expand-scale", type=int, default=0, help="grow (>0) or shrink (<0) the mask by this kernel size")
    custom.add_argument("--input-json", help="upstream's batch: a .json item or a .list of them (one path a line), each with its "
                        "seg_item_image_path, pos_prompt, neg_prompt, item_prompt (name), seed and video_path/mask_path or "
                        "audio_path; sampled one after the other in this process, written as <image name>.mp4")
    for name in ("llava", "whisper"):
        custom.add_argument(f"--{name}-dir", help=f"Hugging Face folder of HunyuanCustom's {name}")
    image = parser.add_argument_group(f"Hunyuan-DiT text to image (--config {DIT_CONFIG}, {DIT_V1_1_CONFIG} or {TINY_DIT_CONFIG})")
    image.add_argument("--image-size", type=int, nargs="+", metavar="SIZE",
                       help="height width, or one value for a square; aligned down to multiples of 16 (default 1024 1024)")
    image.add_argument("--sampler", choices=SOLVERS, help="ddpm (upstream's default), ddim or dpmms (DPM-Solver++ 2M)")
    image.add_argument("--negative", help="negative prompt (default, and when empty: upstream's)")
    image.add_argument("--batch-size", type=int, help="images for the prompt, sampled as one batch (default 1)")
    image.add_argument("--size-cond", type=int, nargs=2, metavar=("W", "H"), help="original-size condition of v1.0/v1.1 "
                       "weights (configs/hunyuan_dit_v1_1.py sets 1024 1024)")
    image.add_argument("--resolution-binning", action=argparse.BooleanOptionalAction, default=None,
                       help="snap the size to the released resolution buckets (default off, as upstream)")
    for name in ("bert", "mt5"):
        image.add_argument(f"--{name}-dir", help=f"converted {name} folder (overrides --model-base)")
    parser.add_argument("--config", help=f"model config (default: {RELEASED_CONFIG} with checkpoints, else {TINY_DEFAULT_CONFIG} "
                        f"with the shipped weights, or {TINY_CONFIG} with random weights)")
    add_debug_flag(parser)
    args, overrides = parse_with_overrides(parser, argv, "sampling.steps=20")
    return parser, args, overrides


@dataclasses.dataclass(frozen=True)
class Plan:
    config: object
    config_path: str
    paths: ModelPaths | DiTPaths
    options: SamplingOptions | ImageSamplingOptions  # ImageSamplingOptions: Hunyuan-DiT text to image
    prompt: str
    save_path: Path
    custom: object = None  # CustomInputs in HunyuanCustom mode
    step_cache: bool = True
    compile_cache: str = ""
    loras: tuple = ()  # ((LoraUpdates, scale), ...) read and checked, merged when the transformer loads
    fps: int | None = None  # None: the mode's default
    jobs: tuple = ()  # Job per video batch to sample (one, or the --input-json items)
    ip_cfg_scale: float = 0.0
    notes: tuple[str, ...] = ()  # about flags that do less than one might think (printed by main)
    memory: MemoryMode = MemoryMode()
    residency: str = "auto"
    dry_run: bool = False



@dataclasses.dataclass(frozen=True)
class Job:
    prompt: str
    options: SamplingOptions
    inputs: object = None  # CustomInputs in HunyuanCustom mode
    save_name: str | None = None  # an --input-json item's; None: from the prompt and seed


def plan(argv) -> Plan:
    """Everything the run needs, checked; loads no model. Raises SystemExit with a message."""
    parser, args, overrides = parse_args(argv)
    try:
        items = batch_items(args) if args.input_json else []
        custom = bool(args.ref_image or args.input_audio or args.input_video or args.mask_video)
        if custom and args.dry_run:
            raise ValueError("--dry-run plans text-to-video runs; leave out the HunyuanCustom inputs to plan the base model")
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
        image = config.get("pipeline") == IMAGE_PIPELINE
        refused = [f"--{n.replace('_', '-')}" for n in (VIDEO_FLAGS if image else IMAGE_FLAGS) if getattr(args, n) is not None]
        if refused:
            raise ValueError(f"{' '.join(refused)} {'do' if len(refused) > 1 else 'does'} not apply to "
                             + (f"Hunyuan-DiT text to image ({config_path})" if image else
                                f"{config_path}; Hunyuan-DiT's flags need --config {DIT_CONFIG} (or {TINY_DIT_CONFIG})"))
        set_precisions(config, args)
        set_parallel(config, args)
        if image:
            memory_flags = [f for f, on in (("--use-fp8", args.use_fp8), ("--use-cpu-offload", args.cpu_offload),
                                             ("--dry-run", args.dry_run), ("--residency", args.residency != "auto")) if on]
            if memory_flags:
                raise ValueError(f"{' '.join(memory_flags)} apply to the HunyuanVideo transformers, not to Hunyuan-DiT "
                                 f"({config_path}): leave {'them' if len(memory_flags) > 1 else 'it'} out")
            return plan_images(args, config, config_path, base)
        size = None
        if args.video_size:
            size, note = official_size(args.video_size)
            if note:
                print(note)
        noise_dtype = args.noise_dtype or (args.text_encoder_precision and PRECISIONS[args.text_encoder_precision])
        flags = dict(height=size and size[0], width=size and size[1], frames=args.video_length,
                     steps=args.infer_steps, flow_shift=args.flow_shift, embedded_guidance=args.embedded_cfg_scale,
                     cfg_scale=args.cfg_scale, negative_prompt=args.neg_prompt, noise_dtype=noise_dtype, vae_tiling=args.vae_tiling,
                     first_block_cache=args.first_block_cache)
        seed = args.seed if args.seed is not None else config.sampling.get("seed", random.randrange(1_000_000))
        sampling = config.sampling.to_dict()
        if custom and args.input_video:  # the editing checkpoint's schedule unless flags say otherwise
            sampling.update(config.editing_sampling.to_dict())
        if custom and args.input_audio:  # the audio scripts' negative prompt
            sampling.update(config.audio_sampling.to_dict())
        options = dataclasses.replace(SamplingOptions.from_mapping(sampling), num_videos=args.num_videos, seed=seed,
                                      **{k: v for k, v in flags.items() if v is not None})
        negative = options.negative_prompt
        options = dataclasses.replace(options, negative_prompt=args.add_neg_prompt + negative)
        prompt = args.prompt if args.prompt is not None else config.get("default_prompt", DEFAULT_PROMPT)
        inputs, jobs, notes = None, [], []
        if args.neg_prompt is not None and not options.true_cfg:
            notes.append(f"--neg-prompt is unused: the negative prompt only enters with true CFG, --cfg-scale > 1 "
                         f"(now {options.cfg_scale})")
        if custom:
            if options.first_block_cache and args.step_cache and options.steps == STEP_CACHE_STEPS:
                raise ValueError(f"--first-block-cache and the step cache (on at {STEP_CACHE_STEPS} steps) do not combine: "
                                 "add --no-step-cache, or drop --first-block-cache")
            paths.check(config.get("allow_random_weights", False), audio=bool(args.input_audio))
            for item in items:  # upstream's defaults for what an item leaves out (video_dataset.py:141-144)
                item_args = argparse.Namespace(**{**vars(args), **item_flags(item)})
                item_options = dataclasses.replace(options, seed=options.seed if item.seed is None else item.seed,
                                                   negative_prompt=args.add_neg_prompt + (negative if item.negative_prompt is None
                                                                                          else item.negative_prompt))
                item_inputs, item_options = read_custom_inputs(item_args, config, paths, item_options, notes)
                jobs.append(Job(args.add_pos_prompt + (prompt if item.prompt is None else item.prompt), item_options,
                                item_inputs, item.save_name))
            inputs, options = (jobs[0].inputs, jobs[0].options) if jobs else read_custom_inputs(args, config, paths, options, notes)
            if args.ip_cfg_scale > 0 and (not options.true_cfg or inputs.audio is not None or inputs.video is not None):
                raise ValueError("--ip-cfg-scale needs --cfg-scale > 1 and the identity mode (no --input-audio / --input-video), "
                                 "as upstream")
        elif args.ip_cfg_scale:
            raise ValueError("--ip-cfg-scale is HunyuanCustom's: add --ref-image")
        else:
            paths.check(config.get("allow_random_weights", False) or args.dry_run)  # a dry run loads no weights
        loras = read_loras(config, args.lora, custom, args.lora_skip_unknown) if args.lora else ()
        # hyvideo's sample_video.py:20 and hymm_sp/sample_batch.py:27
        save_path = writable_folder(Path(f"{args.save_path}_{args.save_path_suffix}" if args.save_path_suffix else args.save_path))
        if args.compile_cache:
            writable_folder(Path(args.compile_cache), "compiled programs", "pass a writable --compile-cache, or '' to turn it off")
    except (ValueError, KeyError, FileNotFoundError) as error:
        parser.exit(2, f"sample.py: error: {str(error).strip(chr(39) + chr(34))}\n")
    prompt = args.add_pos_prompt + prompt
    return Plan(config, config_path, paths, options, prompt, save_path, inputs, args.step_cache, args.compile_cache, tuple(loras),
                args.fps, tuple(jobs) or (Job(prompt, options, inputs),), args.ip_cfg_scale, tuple(notes),
                MemoryMode(fp8=args.use_fp8, offload=args.cpu_offload), args.residency, args.dry_run)


def lora_spec(text: str) -> tuple[str, float]:
    """--lora PATH or PATH:SCALE (default scale 1.0)."""
    path, sep, scale = text.rpartition(":")
    if sep:
        try:
            return path, float(scale)
        except ValueError:
            pass
    return text, 1.0


def read_loras(config, specs, custom: bool, skip_unknown: bool):
    """The --lora files read and checked against the transformer this run loads."""
    from hyv_jax.lora.merge import read_lora_files
    from hyv_jax.models.custom.transformer import CustomTransformerConfig
    from hyv_jax.models.transformer import TransformerConfig

    transformer = (CustomTransformerConfig if custom else TransformerConfig).from_mapping(config.transformer)
    return read_lora_files(transformer, specs, skip_unknown=skip_unknown)


def plan_images(args, config, config_path: str, base: Path | None) -> Plan:
    """The Plan of a Hunyuan-DiT run: upstream's sample_t2i.py flags over the config's
    `sampling` section, the converted folders checked."""
    paths = DiTPaths(**{name: getattr(args, f"{name}_dir") or (base / name if base else None)
                        for name in DiTPaths.__dataclass_fields__})
    paths.check(config.get("allow_random_weights", False))
    size = args.image_size
    if size is not None and len(size) not in (1, 2):
        raise ValueError(f"--image-size takes the height and width, or one value for a square, got {size}")
    flags = dict(height=size and size[0], width=size and size[-1], steps=args.infer_steps, solver=args.sampler,
                 cfg_scale=args.cfg_scale, negative_prompt=args.negative, num_images=args.batch_size,
                 size_cond=args.size_cond and tuple(args.size_cond), resolution_binning=args.resolution_binning)
    seed = args.seed if args.seed is not None else config.sampling.get("seed", random.randrange(1_000_000))
    options = dataclasses.replace(ImageSamplingOptions.from_mapping(config.sampling), seed=seed,
                                  **{k: v for k, v in flags.items() if v is not None})
    save_path = writable_folder(Path(args.save_path), "images")
    if args.compile_cache:
        writable_folder(Path(args.compile_cache), "compiled programs", "pass a writable --compile-cache, or '' to turn it off")
    prompt = args.prompt if args.prompt is not None else config.get("default_prompt", DEFAULT_PROMPT)
    return Plan(config, config_path, paths, options, prompt, save_path, compile_cache=args.compile_cache)


def batch_items(args) -> list:
    """--input-json's items; the flags of the first set the mode (one checkpoint runs one mode)."""
    from hyv_jax.sampling.input_batch import read_input_batch

    given = [flag for flag, value in (("--ref-image", args.ref_image), ("--input-video", args.input_video),
                                      ("--mask-video", args.mask_video), ("--input-audio", args.input_audio)) if value]
    if given:
        raise ValueError(f"--input-json items name their own inputs: drop {', '.join(given)}")
    items = read_input_batch(args.input_json)
    modes = {(i.video is not None, i.mask is not None, i.audio is not None) for i in items}
    if len(modes) > 1:
        raise ValueError(f"the items of {args.input_json} mix identity, editing and audio inputs; one checkpoint runs one "
                         "mode: split them into one list per mode")
    vars(args).update(item_flags(items[0]))
    return items


def item_flags(item) -> dict:
    """An --input-json item as the flags of a single run."""
    path = lambda p: None if p is None else str(p)  # noqa: E731
    return dict(ref_image=[str(item.ref_image)], input_video=path(item.video), mask_video=path(item.mask),
                input_audio=path(item.audio), subject_name=item.name)


def set_precisions(config, args) -> None:
    """The precision flags into the config's sections: --precision the transformer, --vae-precision
    the VAE, --text-encoder-precision the LLM and LLaVA's vision tower, -2 CLIP (upstream's)."""
    sections = [(("transformer",), args.precision), (("vae",), args.vae_precision),
                (("text_encoder", "llm"), args.text_encoder_precision), (("text_encoder", "clip"), args.text_encoder_precision_2),
                (("vision",), args.text_encoder_precision)]
    for path, flag in sections:
        if flag and path[0] in config:
            section = config
            for name in path:
                section = section[name]
            section.update(dtype=PRECISIONS[flag], param_dtype=PRECISIONS[flag])


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
        # upstream edits at the input's own size and frames (hymm_sp/data_kits/video_dataset.py:189-191,
        # sample_batch.py:76-78): min(video, mask) frames read, the largest 4k+1 of them produced,
        # the size rounded up to 16; --video-size overrides the size
        frames = editing_frames(len(video), len(mask_frames))
        video, mask_frames = video[:frames], mask_frames[:frames]
        if args.video_size is None:
            (height, width), note = official_size(video.shape[1:3])
            if note:
                print(f"{note.removeprefix('note: ')}: the input video's size")
            options = dataclasses.replace(options, height=height, width=width)
        options = dataclasses.replace(options, frames=frames)
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
    from hyv_jax.parallel.processes import is_main, main_print

    parallel = start_jax(p)
    lead = is_main()  # only process 0 prints and writes
    say = main_print
    if isinstance(p.options, ImageSamplingOptions):
        return sample_images(p, parallel, say, lead)
    o = p.options
    for note in p.notes:
        say(f"sample.py: note: {note}", file=sys.stderr)
    say(f"config {p.config_path}: {o.height}x{o.width}, {o.frames} frames, {o.steps} steps, shift {o.flow_shift}, "
        f"embedded guidance {o.embedded_guidance}, cfg {o.cfg_scale}, seed{'s' if o.num_videos > 1 else ''} "
        f"{o.seed}{f'..{o.seed + o.num_videos - 1}' if o.num_videos > 1 else ''}"
        f"{f'; {len(p.jobs)} items' if len(p.jobs) > 1 else ''}")
    for note in model_notes(p):
        say(note)
    residency = planned_residency(p, parallel, say)
    if p.dry_run:
        return []
    with out_of_memory_advice(p.config_path, o):
        pipeline = load_pipeline(p, parallel, residency)
    fps, sample_rate = output_rates(p)
    written = []
    for job in p.jobs:  # one pipeline: the compiled programs of the first job serve the others
        start = time.perf_counter()
        with out_of_memory_advice(p.config_path, job.options):
            videos = sample_job(pipeline, p, job, progress=lead)
        say(f"sampled {job.options.num_videos} video(s) in {time.perf_counter() - start:.1f} s")
        if videos.full_steps < job.options.steps:
            say(f"cache: {videos.full_steps} of {job.options.steps} steps ran every block")
        if lead:
            written += save_videos(p.save_path, job, videos, fps, sample_rate)
    return written


def start_jax(p: Plan):
    """Starts JAX for the plan (the multi-host handshake first, the compilation cache), prints
    the devices; the ParallelPlan of the config's mesh, or None for one device."""
    from hyv_jax.parallel.devices import cpu_fallback_warning, device_summary
    from hyv_jax.parallel.mesh import initialize_distributed
    from hyv_jax.parallel.plan import plan_if_parallel
    from hyv_jax.parallel.processes import is_main, main_print

    initialize_distributed(p.config.parallel)  # before any other use of JAX
    enable_compilation_cache(p.compile_cache)
    if is_main() and (warning := cpu_fallback_warning()):
        print(warning, file=sys.stderr)
    parallel = plan_if_parallel(p.config.parallel)
    mesh = "one device" if parallel is None else " x ".join(f"{k} {v}" for k, v in parallel.mesh.shape.items()) + \
        f", context strategy {parallel.context_strategy}"
    main_print(f"{device_summary()}; {mesh}")
    return parallel


def model_notes(p: Plan) -> list[str]:
    """What the user should know about the weights a video plan runs: the shipped tiny default's
    vocabulary, random weights, the LoRAs merged."""
    notes = []
    if p.paths == shipped_paths():
        from hyv_jax.training.procedural_scenes import COLORS, DIRECTIONS, SHAPES

        notes.append(f"the tiny default trained on procedural scenes ({ASSET_DIR}; its text encoders random, seeded): it draws "
                     f"'a COLOUR SHAPE moving DIRECTION' with COLOUR in {'/'.join(COLORS)}, SHAPE in {'/'.join(SHAPES)}, "
                     f"DIRECTION in {'/'.join(DIRECTIONS)}")
    elif p.paths.missing() and not p.dry_run:
        notes.append(f"RANDOM WEIGHTS for {', '.join(p.paths.missing())} (no checkpoint given): the output shows the pipeline "
                     "works, not a real video")
    notes += [f"LoRA {updates.summary()}; scale {scale}" for updates, scale in p.loras]
    return notes


def load_pipeline(p: Plan, parallel, residency: str = "resident"):
    """The video plan's pipeline, its models loaded (HunyuanCustom's with Whisper when the plan
    has audio), the DiT held as the plan's memory flags and `residency` say; it serves every
    job of the plan and any later plan of the same models."""
    if p.custom is not None:
        from hyv_jax.sampling.custom_pipeline import CustomVideoPipeline

        return CustomVideoPipeline.from_config(p.config, p.paths, audio=p.custom.audio is not None, plan=parallel,
                                               memory=p.memory, residency=residency, loras=p.loras)
    from hyv_jax.sampling.pipeline import TextToVideoPipeline

    return TextToVideoPipeline.from_config(p.config, p.paths, plan=parallel, memory=p.memory, residency=residency, loras=p.loras)


def sample_job(pipeline, p: Plan, job: Job, *, progress: bool):
    """One job's Videos on the plan's pipeline (progress: the denoising tqdm bar)."""
    if p.custom is not None:
        return pipeline(job.prompt, job.inputs, job.options, step_cache=p.step_cache, ip_cfg_scale=p.ip_cfg_scale, progress=progress)
    return pipeline(job.prompt, job.options, progress=progress)


def output_rates(p: Plan) -> tuple[int, int | None]:
    """(frame rate, audio sample rate or None) of the plan's mp4s: --fps, else the mode's."""
    from hyv_jax.io.video import FPS

    if p.custom is not None:
        from hyv_jax.sampling.custom_pipeline import FPS as CUSTOM_FPS
        from hyv_jax.sampling.custom_pipeline import SAMPLE_RATE

        return p.fps or CUSTOM_FPS, SAMPLE_RATE
    return p.fps or FPS, None


@contextlib.contextmanager
def out_of_memory_advice(config_path: str, o: SamplingOptions):
    """A device or host out of memory while loading or sampling becomes one line of advice."""
    import jax

    try:
        yield
    except (jax.errors.JaxRuntimeError, MemoryError) as error:
        if isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" not in str(error):
            raise
        what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MemoryError(f"out of memory sampling {o.num_videos} video(s) of {o.height}x{o.width}x{o.frames} with "
                          f"{config_path} ({what}); see the plan with --dry-run; use --use-fp8 and/or --use-cpu-offload, "
                          f"a smaller --video-size or --video-length, fewer --num-videos, --precision bf16, or split the video over more devices (--ulysses-degree, --ring-degree)") from None


def sample_images(p: Plan, parallel, say, lead: bool) -> list[Path]:
    """Hunyuan-DiT: the prompt's images as PNGs (image i from seed + i)."""
    from hyv_jax.io.video import write_image
    from hyv_jax.sampling.hunyuan_dit_pipeline import HunyuanDiTPipeline

    o = p.options
    (height, width), last = o.size, o.seed + o.num_images - 1
    say(f"config {p.config_path}: {height}x{width}, {o.steps} steps {o.solver}, cfg {o.cfg_scale}, "
        f"seed{'s' if o.num_images > 1 else ''} {o.seed}{f'..{last}' if o.num_images > 1 else ''}")
    if p.paths.missing():
        say(f"RANDOM WEIGHTS for {', '.join(p.paths.missing())} (no checkpoint given): the output shows the pipeline works, not a real image")
    pipeline = HunyuanDiTPipeline.from_config(p.config, p.paths, plan=parallel)
    start = time.perf_counter()
    images = pipeline([p.prompt], o, progress=lead)
    say(f"sampled {o.num_images} image(s) in {time.perf_counter() - start:.1f} s")
    if not lead:
        return []
    written = []
    for i, image in enumerate(images):
        written.append(write_image(p.save_path / output_name(p.prompt, o.seed + i, ".png"), image))
        print(f"saved {written[-1]}")
    return written


def save_videos(folder: Path, job: Job, videos, fps: int, sample_rate) -> list[Path]:
    """Writes the job's videos (a PNG for one frame; never over another file: a taken name gets
    _2, ...). When a write fails, the frames of it and of the videos not yet written are kept as
    .npz, in the folder or else the system's temporary folder, and the error says where."""
    from hyv_jax.io.video import keep_frames, write_image, write_video

    sound = {} if job.inputs is None or job.inputs.audio is None else dict(audio=job.inputs.audio, sample_rate=sample_rate)
    written, items = [], list(zip(videos.frames, videos.seeds, strict=True))
    for i, (frames, seed) in enumerate(items):
        try:
            if job.options.frames == 1:
                written.append(write_image(folder / f"{video_stem(job, seed, len(items))}.png", frames[0]))
            else:
                written.append(write_video(folder / f"{video_stem(job, seed, len(items))}.mp4", frames, fps, **sound))
        except OSError as error:
            folders = [folder, Path(tempfile.gettempdir())]
            kept = [keep_frames(f, video_stem(job, s, len(items)), folders, fps=fps, **sound) for f, s in items[i:]]
            reason = f"could not write video {i + 1} of {len(items)} to {folder} ({error.strerror or error})"
            if None in kept:
                raise OSError(f"{reason}; its frames could not be kept in {' or '.join(map(str, folders))} either: they are "
                              f"lost{'; written before: ' + ', '.join(map(str, written)) if written else ''}") from error
            raise OSError(f"{reason}; the frames are kept in {', '.join(map(str, kept))}: once there is room, write them with "
                          f"python -c \"import numpy as np; from hyv_jax.io.video import write_video; "
                          f"write_video('video.mp4', **np.load('{kept[0]}'))\"") from error
        print(f"saved {written[-1]}")
    return written


def video_stem(job: Job, seed: int, count: int) -> str:
    """The file name without suffix: an --input-json item's (upstream's <image name>, sample_batch.py:113,
    the seed added for several videos), else from the time, seed and prompt."""
    if job.save_name is None:
        return output_name(job.prompt, seed, "")
    return f"{job.save_name}{f'_seed{seed}' if count > 1 else ''}"


if __name__ == "__main__":
    run_command(main, None, "sample.py")
    exit_at_once()  # every video is written (atomically) by now
