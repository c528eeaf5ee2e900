"""Which parameters upstream's `--use-fp8` keeps in float8_e4m3fn, and converted checkpoints
that store them that way.

Upstream (hyvideo/modules/fp8_optimization.py:94-96, convert_fp8_linear) swaps every nn.Linear
whose module name contains 'double_blocks' or 'single_blocks' for an fp8 weight with one scale
per tensor; biases, norms, the embedders, the token refiner and the final layer stay in the
model dtype. Our name table maps each such Linear weight to one kernel, or to two (the single
blocks' fused linear1 = [qkv | mlp] and linear2 = [attn | mlp] become two kernels each), so the
unit of quantisation is a *group* of our kernels sharing one scale per layer.

A converted fp8 folder stores a group kernel as two leaves, `<kernel>/w8` (float8_e4m3fn, the
kernel's shape) and `<kernel>/scale` (float32, one per layer), and records `"fp8": true`.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hyv_jax.convert.checkpoint_source import open_checkpoint, torch_to_numpy
from hyv_jax.convert.mapping import CheckpointMismatch, Rule, torch_to_jax
from hyv_jax.nn.fp8 import FP8, Fp8Weight, fp8_scale, quantize_fp8

BLOCK_STACKS = ("double_blocks", "single_blocks")
Group = tuple[tuple[str, ...], ...]


def _fp8_rules(rules: Sequence[Rule]) -> list[Rule]:
    """The table entries of upstream's fp8 Linear weights (inside the blocks, onto kernels)."""
    return [r for r in rules if r.source.endswith(".weight") and any(b in r.source for b in BLOCK_STACKS)
            and all(slot.path[-1] == "kernel" for slot in r.targets)]


def fp8_groups(rules: Sequence[Rule]) -> tuple[Group, ...]:
    """The groups of our (stacked) kernels that hold one upstream fp8 Linear each."""
    return tuple(dict.fromkeys(tuple(slot.path for slot in r.targets) for r in _fp8_rules(rules)))


def quantize_groups(flat: Mapping, groups: Sequence[Group]) -> dict:
    """Numpy parameters (model dtype) with each group's kernels as Fp8Weight: upstream's
    quantiser per layer, one scale per layer over the whole group (the fused upstream tensor)."""
    out = dict(flat)
    for group in groups:
        weights = [np.asarray(flat[p]) for p in group]
        scale = fp8_scale(weights, stacked=1)
        for path, weight in zip(group, weights, strict=True):
            out[path] = Fp8Weight(quantize_fp8(weight, scale), scale, weight.dtype)
    return out


def read_fp8_map(path: str | Path) -> dict[str, np.float32]:
    """{module name: scale} of an `*_fp8_map.pt` (float32, as stored)."""
    import torch

    scales = torch.load(Path(path), map_location="cpu", weights_only=True)
    return {k: np.float32(np.asarray(torch_to_numpy(v) if hasattr(v, "detach") else v, np.float32).reshape(())) for k, v in scales.items()}


def kept_fp8(source, scales: Mapping[str, np.float32], rules: Sequence[Rule], shapes: Mapping, dtype, what: str) -> dict:
    """Our parameters from an official fp8 checkpoint (original layout, the fp8 tensors read
    raw) with its scale map, the fp8 values kept bit for bit: group kernels as Fp8Weight with the
    map's scales, everything else in `dtype`."""
    fp8_rules = _fp8_rules(rules)
    kernels = {slot.path for r in fp8_rules for slot in r.targets}
    for rule in fp8_rules:
        module = rule.source.removesuffix(".weight")
        if rule.source in source and module not in scales:
            raise CheckpointMismatch(f"{what}: the fp8 map has no scale for {module}")
        if rule.source in source and source.get(rule.source).dtype != FP8:
            raise CheckpointMismatch(f"{what}: {rule.source} is not stored in float8_e4m3fn; convert this checkpoint without --fp8 "
                                     "(and without --fp8-map), or pass the fp8 release's files")
    other = [k for k in source.keys() if k not in {r.source for r in fp8_rules} and source.get(k).dtype == FP8]
    if other:
        raise CheckpointMismatch(f"{what}: {len(other)} tensors outside upstream's fp8 Linear layers are stored in fp8 "
                                 f"(e.g. {other[0]}); this is not the fp8 release's layout")
    flat = torch_to_jax(source, rules, shapes, {p: FP8 if p in kernels else np.dtype(dtype) for p in shapes}, what)
    layer_scales = {p: np.zeros(shapes[p][0], np.float32) for p in kernels}
    for rule in fp8_rules:
        for slot in rule.targets:
            layer_scales[slot.path][slot.layer] = scales[rule.source.removesuffix(".weight")]
    return {p: Fp8Weight(v, layer_scales[p], np.dtype(dtype)) if p in kernels else v for p, v in flat.items()}


def read_fp8_params(path: str | Path, fp8_map: str | Path | None, read: Callable, rules: Sequence[Rule], shapes: Mapping,
                    dtype, what: str) -> dict:
    """Parameters of a transformer checkpoint with upstream's fp8 Linear weights as Fp8Weight:
    kept from an fp8 release (`fp8_map` given), or quantised from any other checkpoint (`read`:
    (source, dtype) -> our flat parameters)."""
    if fp8_map is not None:
        return kept_fp8(open_checkpoint(path, keep_fp8=True), read_fp8_map(fp8_map), rules, shapes, dtype, what)
    return quantize_groups(read(open_checkpoint(path), dtype), fp8_groups(rules))


def stored(flat: Mapping) -> dict:
    """Flat parameters as saved: each Fp8Weight as its `w8` and `scale` leaves."""
    out = {}
    for path, value in flat.items():
        if isinstance(value, Fp8Weight):
            out[(*path, "w8")], out[(*path, "scale")] = value.w8, value.scale
        else:
            out[path] = value
    return out


def stored_dtypes(shapes: Mapping, groups: Sequence[Group], dtype) -> dict:
    """{saved path: (shape, dtype)} of an fp8 folder of a model with parameter `shapes`."""
    kernels = {p for g in groups for p in g}
    out = {}
    for path, shape in shapes.items():
        if path in kernels:
            out[(*path, "w8")], out[(*path, "scale")] = (tuple(shape), FP8), ((shape[0],), np.dtype(np.float32))
        else:
            out[path] = (tuple(shape), np.dtype(dtype))
    return out
