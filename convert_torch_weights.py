"""Convert HunyuanVideo PyTorch checkpoints to hyv_jax Orbax checkpoints, and back.

Models (--model, default transformer); reads (layout detected from the key names):
  transformer, original Tencent layout: mp_rank_00_model_states.pt ({"module": ...},
      {"ema": ...} or a bare state dict), or the same keys in .safetensors;
  transformer, fp8: mp_rank_00_model_states_fp8.pt with --fp8-map
      mp_rank_00_model_states_fp8_map.pt (weights dequantised as w8 * scale; with --fp8 kept in
      fp8 with their scales);
  transformer, diffusers layout: diffusion_pytorch_model.safetensors, or a folder / *.index.json
      of sharded safetensors (HunyuanVideoTransformer3DModel names);
  custom (HunyuanCustom DiT, with --config configs/hunyuan_custom.py): hunyuancustom_720P,
      _audio_720P (--config.transformer.audio_condition=True) or _editing_720P
      (--config.transformer.video_condition=True) mp_rank_00_model_states.pt, or the fp8 file
      with --fp8-map;
  vae: hunyuan-video-t2v-720p/vae/pytorch_model.pt (optionally wrapped in "state_dict", names
      optionally prefixed "vae.") or diffusers' vae/diffusion_pytorch_model.safetensors;
  llm: a Hugging Face folder (safetensors, single or sharded with the index json) of a Llama
      (LlamaModel / LlamaForCausalLM) or the full LLaVA (llava-llama-3-8b-v1_1, either naming);
      the language model up to the config's output_layer is kept, tokenizer files are copied;
  clip: a CLIPModel (openai/clip-vit-large-patch14) or CLIPTextModel folder; the text model is
      kept, tokenizer files are copied.
Hunyuan-DiT (with --config configs/hunyuan_dit.py, or configs/hunyuan_dit_v1_1.py for v1.0/v1.1):
  hunyuan_dit: t2i/model/pytorch_model_ema.pt (or _module.pt, _distill.pt; a training save
      {"ema": ..., "module": ...} gives "ema"), or diffusers' transformer/ folder
      (HunyuanDiT2DModel names);
  bert: t2i/clip_text_encoder/pytorch_model.bin (tokenizer from t2i/tokenizer) or diffusers'
      text_encoder/ (tokenizer/); the pooler is left out;
  mt5: t2i/mt5/pytorch_model.bin or diffusers' text_encoder_2/ (tokenizer_2/); the encoder is
      kept. A tokenizer.json is written beside both text encoders (built by transformers from
      vocab.txt / spiece.model when the folder has none);
  sdxl_vae: t2i/sdxl-vae-fp16-fix/diffusion_pytorch_model.safetensors (or .bin), diffusers'
      AutoencoderKL names.
Writes: an Orbax checkpoint folder (params/ + hyv_jax.json) in --dtype (default: bfloat16 for
the transformer, float16 for the text encoders (the precision they run in upstream), float32 for
the VAEs). Tensors stream one at a time from memory-mapped files. Only floating-point tensors
are read (fp8 only with --fp8-map) and every converted value must be finite in --dtype.
--fp8 (transformers): the blocks' Linear weights as float8_e4m3fn with one float32 scale per
weight (upstream's --use-fp8 set), from an fp8 release with its map as stored, or quantised from
any other checkpoint with upstream's rounding; sample.py --use-fp8 keeps them so on the device
(without it they load dequantised). The folder is written beside --out under a hidden name and
renamed to --out when complete; an existing --out is replaced only with --overwrite, only if it
is a converted checkpoint of the same model holding nothing else, and only after the new one is
whole.

Export (to-torch): an Orbax checkpoint back to a .safetensors file in the original or the
diffusers layout.

Self-check (no weights needed): builds the tiny model with random weights, writes it as an
original-layout PyTorch checkpoint, converts it to Orbax and back to both layouts, and checks
that parameters round-trip bit for bit and the restored model's forward is unchanged.

Examples:
  python convert_torch_weights.py self-check
  python convert_torch_weights.py to-jax --checkpoint ckpts/.../mp_rank_00_model_states.pt --out ckpts/hyv_jax/transformer
  python convert_torch_weights.py to-jax --checkpoint ckpts/.../mp_rank_00_model_states_fp8.pt \\
      --fp8-map ckpts/.../mp_rank_00_model_states_fp8_map.pt --out ckpts/hyv_jax/transformer
  python convert_torch_weights.py to-jax --fp8 --checkpoint ckpts/.../mp_rank_00_model_states.pt --out ckpts/hyv_jax/transformer_fp8
  python convert_torch_weights.py to-jax --model vae --checkpoint ckpts/.../vae/pytorch_model.pt --out ckpts/hyv_jax/vae
  python convert_torch_weights.py to-jax --model llm --checkpoint ckpts/text_encoder --out ckpts/hyv_jax/llm
  python convert_torch_weights.py to-jax --model clip --checkpoint ckpts/text_encoder_2 --out ckpts/hyv_jax/clip
  python convert_torch_weights.py to-torch --orbax ckpts/hyv_jax/transformer --layout diffusers --out transformer.safetensors
  python convert_torch_weights.py to-jax --model hunyuan_dit --config configs/hunyuan_dit.py \\
      --checkpoint ckpts/t2i/model/pytorch_model_ema.pt --out ckpts/jax_dit/transformer
Config overrides: --config configs/tiny.py --config.transformer.hidden_size=64
"""

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np

from configs import load_config
from configs.command_line import add_debug_flag, parse_with_overrides, run_command
from hyv_jax.convert.custom_checkpoint import MODEL_KIND as CUSTOM_KIND
from hyv_jax.convert.custom_checkpoint import convert_custom, export_torch_custom, read_converted_custom
from hyv_jax.convert.hunyuan_dit_checkpoint import MODEL_KIND as DIT_KIND
from hyv_jax.convert.hunyuan_dit_checkpoint import (convert_hunyuan_dit, export_torch_hunyuan_dit, from_section,
                                                   read_converted_hunyuan_dit)
from hyv_jax.convert.hunyuan_dit_text_checkpoint import SPECS as DIT_TEXT
from hyv_jax.convert.hunyuan_dit_text_checkpoint import convert_hunyuan_dit_text
from hyv_jax.convert.sdxl_vae_checkpoint import MODEL_KIND as SDXL_VAE_KIND
from hyv_jax.convert.sdxl_vae_checkpoint import convert_sdxl_vae, export_torch_sdxl_vae, read_converted_sdxl_vae
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.orbax_io import check_replaceable, read_info
from hyv_jax.convert.text_checkpoint import CLIP, LLM, TOKENIZER_EXTRAS, TOKENIZER_FILE, convert_text, export_torch_text, read_converted_text
from hyv_jax.convert.transformer_checkpoint import LAYOUTS, convert_transformer, export_torch_transformer, read_converted_transformer
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND as TRANSFORMER_KIND
from hyv_jax.convert.vae_checkpoint import MODEL_KIND as VAE_KIND
from hyv_jax.convert.vae_checkpoint import convert_vae, export_torch_vae, read_converted_vae
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAEConfig
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.models.vae import VAEConfig

DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}


@dataclasses.dataclass(frozen=True)
class Model:
    """How the command line drives one model's converter."""

    kind: str  # recorded in the converted checkpoint's info file
    config_section: str
    config_from_mapping: Callable
    convert: Callable  # (checkpoint, config, out, *, dtype, fp8_map, overwrite) -> None
    read_converted: Callable  # (orbax dir) -> (config, flat params)
    export: Callable  # (flat, config, layout) -> {torch name: array}
    layouts: tuple[str, ...]
    default_dtype: str
    files: tuple[str, ...] = ()  # written beside the parameters (tokenizer files)


MODELS = {
    "transformer": Model(TRANSFORMER_KIND, "transformer", TransformerConfig.from_mapping, convert_transformer,
                         read_converted_transformer, export_torch_transformer, LAYOUTS, "bfloat16"),
    "vae": Model(VAE_KIND, "vae", VAEConfig.from_mapping,
                 lambda path, config, out, *, dtype, fp8_map, overwrite: convert_vae(path, config, out, dtype=dtype, overwrite=overwrite),
                 read_converted_vae, lambda flat, config, layout: export_torch_vae(flat, config), ("original",), "float32"),
    **{spec.section: Model(spec.kind, "text_encoder", lambda section, s=spec: s.config_from_mapping(section[s.section]),
                   lambda path, config, out, *, dtype, fp8_map, overwrite, s=spec: convert_text(path, s, config, out, dtype=dtype,
                                                                                                 overwrite=overwrite),
                   lambda directory, s=spec: read_converted_text(directory, s),
                   lambda flat, config, layout, s=spec: export_torch_text(flat, s, config), ("original",), "float16",
                   (TOKENIZER_FILE, *TOKENIZER_EXTRAS))
       for spec in (LLM, CLIP)},
    "custom": Model(CUSTOM_KIND, "transformer", CustomTransformerConfig.from_mapping, convert_custom, read_converted_custom,
                    lambda flat, config, layout: export_torch_custom(flat, config), ("original",), "bfloat16"),
    "hunyuan_dit": Model(DIT_KIND, "transformer", lambda section: from_section(section, HunyuanDiTConfig.from_mapping, "depth"),
                         lambda path, config, out, *, dtype, fp8_map, overwrite: convert_hunyuan_dit(path, config, out, dtype=dtype,
                                                                                                     overwrite=overwrite),
                         read_converted_hunyuan_dit, export_torch_hunyuan_dit, LAYOUTS, "bfloat16"),
    **{name: Model(spec.kind, "text_encoder", lambda section, s=spec: from_section(section, lambda x: s.config_from_mapping(x[s.section]), s.section),
                   lambda path, config, out, *, dtype, fp8_map, overwrite, n=name: convert_hunyuan_dit_text(
                       path, n, config, out, dtype=dtype, overwrite=overwrite),
                   lambda directory, s=spec: read_converted_text(directory, s),
                   lambda flat, config, layout, s=spec: export_torch_text(flat, s, config), ("original",), "bfloat16",
                   (TOKENIZER_FILE, *TOKENIZER_EXTRAS))
       for name, spec in DIT_TEXT.items()},
    "sdxl_vae": Model(SDXL_VAE_KIND, "vae", lambda section: from_section(section, SDXLVAEConfig.from_mapping, "attention_impl"),
                      lambda path, config, out, *, dtype, fp8_map, overwrite: convert_sdxl_vae(path, config, out, dtype=dtype,
                                                                                               overwrite=overwrite),
                      read_converted_sdxl_vae, lambda flat, config, layout: export_torch_sdxl_vae(flat, config), ("original",),
                      "float32"),
}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    to_jax = sub.add_parser("to-jax", help="PyTorch checkpoint -> Orbax")
    to_jax.add_argument("--model", default="transformer", choices=sorted(MODELS), help="which model the checkpoint holds")
    to_jax.add_argument("--checkpoint", required=True, help=".pt/.pth/.safetensors file, a folder of shards, or an *.index.json")
    to_jax.add_argument("--fp8-map", help="the *_fp8_map.pt scale map of an fp8 checkpoint")
    to_jax.add_argument("--fp8", action="store_true", help="transformers: store the blocks' Linear weights in float8_e4m3fn "
                        "with per-tensor scales (kept from an fp8 release, else quantised as upstream) for sample.py --use-fp8")
    to_jax.add_argument("--out", required=True, help="output folder (Orbax checkpoint)")
    to_jax.add_argument("--overwrite", action="store_true",
                        help="replace an existing converted checkpoint of the same model at --out (once the new one is complete)")
    to_jax.add_argument("--dtype", choices=sorted(DTYPES), help="storage dtype (default bfloat16; float16 for the text encoders, float32 for the VAEs)")
    to_jax.add_argument("--config", default="configs/hunyuan_video_t2v.py", help="model config file (default: the released 13B)")
    check = sub.add_parser("self-check", help="tiny random model: torch -> Orbax -> torch, exactly")
    check.add_argument("--config", default="configs/tiny.py", help="model config file (default: the tiny model)")
    to_torch = sub.add_parser("to-torch", help="Orbax -> PyTorch .safetensors")
    to_torch.add_argument("--orbax", required=True, help="folder written by to-jax")
    to_torch.add_argument("--layout", default="original", choices=LAYOUTS, help="key naming of the output (the VAE has one naming)")
    to_torch.add_argument("--out", required=True, help="output .safetensors file")
    to_torch.add_argument("--overwrite", action="store_true", help="replace an existing --out file (once the new one is complete)")
    for command in (to_jax, check, to_torch):
        add_debug_flag(command)
    return parse_with_overrides(parser, argv, "transformer.hidden_size=64")


def self_check(config: TransformerConfig) -> None:
    import tempfile

    import jax
    from flax import nnx

    from hyv_jax.convert.checkpoint_source import open_checkpoint
    from hyv_jax.convert.model_state import params_to_numpy
    from hyv_jax.convert.transformer_checkpoint import read_torch_transformer, restore_transformer
    from hyv_jax.models.transformer import HunyuanVideoTransformer

    model = HunyuanVideoTransformer(config, rngs=nnx.Rngs(0))
    params = params_to_numpy(model)
    original = export_torch_transformer(params, config, "original")
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 3, 4, 6, config.in_channels)).astype(np.float32)
    inputs = (latents, np.array([700.0]), rng.standard_normal((1, 8, config.text_states_dim)), np.array([[1] * 5 + [0] * 3]),
              rng.standard_normal((1, config.text_states_dim_2)), np.array([6000.0]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_safetensors(tmp / "mp_rank_00_model_states.safetensors", original)
        convert_transformer(tmp / "mp_rank_00_model_states.safetensors", config, tmp / "orbax", dtype=np.dtype(config.param_dtype))
        restored = restore_transformer(tmp / "orbax")
        same_params = all(np.array_equal(a, params[p]) for p, a in params_to_numpy(restored).items())
        same_output = np.array_equal(np.asarray(jax.jit(lambda m, *a: m(*a))(model, *inputs)),
                                     np.asarray(jax.jit(lambda m, *a: m(*a))(restored, *inputs)))
        _, back = read_converted_transformer(tmp / "orbax")
        diffusers = export_torch_transformer(back, config, "diffusers")
        write_safetensors(tmp / "diffusers.safetensors", diffusers)
        again = export_torch_transformer(read_torch_transformer(open_checkpoint(tmp / "diffusers.safetensors"), config, np.dtype(config.param_dtype)), config)
        same_torch = set(again) == set(original) and all(np.array_equal(again[k], original[k]) for k in original)
    n = sum(a.size for a in params.values())
    print(f"model: {n:,} parameters, {len(original)} original-layout tensors, {len(diffusers)} diffusers-layout tensors")
    for what, ok in [("parameters restored from Orbax bit-exact", same_params), ("forward output unchanged", same_output),
                     ("original -> Orbax -> diffusers -> original bit-exact", same_torch)]:
        print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not (same_params and same_output and same_torch):
        raise SystemExit("self-check failed")


def main(argv=None):
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "self-check":
        self_check(TransformerConfig.from_mapping(load_config(args.config, overrides).transformer))
    elif args.command == "to-jax":
        model = MODELS[args.model]
        if (args.fp8_map or args.fp8) and args.model not in ("transformer", "custom"):
            raise SystemExit("--fp8-map and --fp8 apply to the transformers only")
        config = model.config_from_mapping(load_config(args.config, overrides)[model.config_section])
        check_replaceable(args.out, model.kind, args.overwrite, model.files)  # before the long part
        dtype = args.dtype or model.default_dtype
        model.convert(args.checkpoint, config, args.out, dtype=DTYPES[dtype], fp8_map=args.fp8_map, overwrite=args.overwrite,
                      **({"fp8": True} if args.fp8 else {}))
        print(f"wrote {args.out} ({args.model}, {dtype}{', fp8 block weights' if args.fp8 else ''}) from {args.checkpoint}")
    else:
        out = Path(args.out)
        if out.is_dir():
            raise FileExistsError(f"--out {out} is a folder; name a .safetensors file")
        if out.exists() and not args.overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it (the old file stays until the new one is complete)")
        kind = read_info(args.orbax).get("model")
        model = next((m for m in MODELS.values() if m.kind == kind), None)
        if model is None:
            raise SystemExit(f"{args.orbax} holds a {kind!r} checkpoint, which to-torch cannot export")
        if args.layout not in model.layouts:
            raise SystemExit(f"a {kind} checkpoint exports in the layouts {model.layouts}, not {args.layout!r}")
        config, flat = model.read_converted(args.orbax)
        state = model.export(flat, config, args.layout)
        write_safetensors(args.out, state, {"format": "pt", "layout": args.layout})
        print(f"wrote {args.out} ({args.layout} layout, {len(state)} tensors)")


if __name__ == "__main__":
    run_command(main, None, "convert_torch_weights.py")
