"""Convert HunyuanVideo PyTorch checkpoints to hyv_jax Orbax checkpoints, and back.

Reads (layout detected from the key names):
  transformer, original Tencent layout: mp_rank_00_model_states.pt ({"module": ...},
      {"ema": ...} or a bare state dict), or the same keys in .safetensors;
  transformer, fp8: mp_rank_00_model_states_fp8.pt with --fp8-map
      mp_rank_00_model_states_fp8_map.pt (weights dequantised as w8 * scale);
  transformer, diffusers layout: diffusion_pytorch_model.safetensors, or a folder / *.index.json
      of sharded safetensors (HunyuanVideoTransformer3DModel names).
Writes: an Orbax checkpoint folder (params/ + hyv_jax.json), bfloat16 unless --dtype says
otherwise. Tensors stream one at a time from memory-mapped files.

Export (to-torch): an Orbax checkpoint back to a .safetensors file in the original or the
diffusers layout.

Examples:
  python convert_torch_weights.py to-jax --checkpoint ckpts/.../mp_rank_00_model_states.pt --out ckpts/hyv_jax/transformer
  python convert_torch_weights.py to-jax --checkpoint ckpts/.../mp_rank_00_model_states_fp8.pt \\
      --fp8-map ckpts/.../mp_rank_00_model_states_fp8_map.pt --out ckpts/hyv_jax/transformer
  python convert_torch_weights.py to-torch --orbax ckpts/hyv_jax/transformer --layout diffusers --out transformer.safetensors
Config overrides: --config configs/tiny.py --config.transformer.hidden_size=64
"""

import argparse
import sys

import ml_dtypes
import numpy as np

from configs import load_config
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.transformer_checkpoint import LAYOUTS, convert_transformer, export_torch_transformer, read_converted_transformer
from hyv_jax.models.transformer import TransformerConfig

DTYPES = {"bfloat16": ml_dtypes.bfloat16, "float16": np.float16, "float32": np.float32}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    to_jax = sub.add_parser("to-jax", help="PyTorch checkpoint -> Orbax")
    to_jax.add_argument("--checkpoint", required=True, help=".pt/.pth/.safetensors file, a folder of shards, or an *.index.json")
    to_jax.add_argument("--fp8-map", help="the *_fp8_map.pt scale map of an fp8 checkpoint")
    to_jax.add_argument("--out", required=True, help="output folder (Orbax checkpoint)")
    to_jax.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES), help="storage dtype (default bfloat16)")
    to_jax.add_argument("--config", default="configs/hunyuan_video_t2v.py", help="model config file (default: the released 13B)")
    to_torch = sub.add_parser("to-torch", help="Orbax -> PyTorch .safetensors")
    to_torch.add_argument("--orbax", required=True, help="folder written by to-jax")
    to_torch.add_argument("--layout", default="original", choices=LAYOUTS, help="key naming of the output")
    to_torch.add_argument("--out", required=True, help="output .safetensors file")
    return parser.parse_known_args(argv)


def main(argv=None):
    args, rest = parse_args(sys.argv[1:] if argv is None else argv)
    bad = [a for a in rest if not a.startswith("--config.")]
    if bad:
        raise SystemExit(f"unknown arguments {bad}; config overrides look like --config.transformer.hidden_size=64")
    overrides = [a.removeprefix("--config.") for a in rest]
    if args.command == "to-jax":
        config = TransformerConfig.from_mapping(load_config(args.config, overrides).transformer)
        convert_transformer(args.checkpoint, config, args.out, fp8_map=args.fp8_map, dtype=DTYPES[args.dtype])
        print(f"wrote {args.out} ({args.dtype}) from {args.checkpoint}")
    else:
        config, flat = read_converted_transformer(args.orbax)
        state = export_torch_transformer(flat, config, args.layout)
        write_safetensors(args.out, state, {"format": "pt", "layout": args.layout})
        print(f"wrote {args.out} ({args.layout} layout, {len(state)} tensors)")


if __name__ == "__main__":
    main()
