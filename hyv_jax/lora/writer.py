"""Writing low-rank changes of our parameters as a LoRA file in one of the formats others read:

- `diffusers`: `transformer.<diffusers module>.lora_A/B.weight`, the scale baked into B (no
  alpha: diffusers/PEFT then use scale 1). HunyuanVideoLoraLoaderMixin loads it as is.
- `original`: `transformer.<original module>.lora_A/B.weight` (diffusion-pipe's layout), scale
  baked into B; diffusers, ComfyUI and musubi's converter read it.
- `kohya`: `lora_unet_<original module with _>.lora_down/lora_up.weight` with an explicit
  `.alpha` (musubi's layout); B carries scale * rank / alpha so that alpha / rank restores it.

Our split parameters join back into the original fused modules exactly (fused qkv + MLP input
of the single blocks, their attention + MLP output projection): parts sharing a factor keep
one rank, others stack their ranks (hyv_jax/convert/transforms.py factors_to_torch).
"""

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.lora.table import LoraTable
from hyv_jax.lora.terms import LowRank, Target

FORMATS = ("diffusers", "original", "kohya")


def _module_factors(terms: Mapping[Target, LowRank], table: LoraTable):
    """(original module, torch down (r, in...), torch up (out, r...)) with each term's scale in up."""
    used = set()
    for module in table.modules.values():
        rule = module.weight
        if rule is None:
            continue
        parts = [terms.get((s.path, s.layer)) for s in rule.targets]
        if not any(parts):
            continue
        if not hasattr(rule.transform, "factors_to_torch"):
            raise ValueError(f"low-rank changes of {module.name}, which is not a linear layer")
        used.update((s.path, s.layer) for s in rule.targets)
        shapes = table.slot_shapes(rule)
        down, up = rule.transform.factors_to_torch([None if t is None else (t.down, t.scale * t.up) for t in parts], shapes)
        torch_shape = rule.transform.torch_shape(shapes)
        if len(torch_shape) > 2:  # a convolution: PEFT's Conv LoRA keeps (r, C, k...) and (out, r, 1, ...)
            down = down.reshape(down.shape[0], *torch_shape[1:])
            up = up.reshape(*up.shape, *(1,) * (len(torch_shape) - 2))
        yield module.name, down, up
    left = sorted("/".join(p) + ("" if i is None else f"[{i}]") for p, i in set(terms) - used)
    if left:
        raise ValueError(f"changes of parameters no original module holds: {left[:5]}")


def lora_tensors(terms: Mapping[Target, LowRank], table: LoraTable, fmt: str, alpha: float | None = None) -> dict[str, np.ndarray]:
    """The file's tensors (float32) for `terms` in format `fmt`; kohya needs `alpha`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown LoRA format {fmt!r}; choose one of {FORMATS}")
    if fmt == "kohya" and not alpha:
        raise ValueError("the kohya format stores an explicit alpha: give a positive alpha")
    out: dict[str, np.ndarray] = {}
    for module, down, up in _module_factors(terms, table):
        rank = down.shape[0]
        if fmt == "kohya":
            name = "lora_unet_" + module.replace(".", "_")
            out[f"{name}.lora_down.weight"] = down
            out[f"{name}.lora_up.weight"] = up * np.float32(rank / alpha)
            out[f"{name}.alpha"] = np.array(alpha, np.float32)
        elif fmt == "original":
            out[f"transformer.{module}.lora_A.weight"] = down
            out[f"transformer.{module}.lora_B.weight"] = up
        else:
            g = table.diffusers.get(module)
            if g is None:
                raise ValueError(f"{module} has no diffusers name (a HunyuanCustom-only module): export as original or kohya")
            for piece, rows in zip(g.pieces, g.split(up), strict=True):
                keep = np.any(rows.reshape(rows.shape[0], rank, -1) != 0, axis=(0, 2))  # ranks this piece uses
                if keep.any():
                    name = f"transformer.{piece.removesuffix('.weight')}"
                    out[f"{name}.lora_A.weight"] = np.ascontiguousarray(down[keep])
                    out[f"{name}.lora_B.weight"] = np.ascontiguousarray(rows[:, keep])
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def save_lora(path: str | Path, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes the file atomically (a temporary name renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write_safetensors(tmp, tensors, {"format": "pt"})
    os.replace(tmp, path)

