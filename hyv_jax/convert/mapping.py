"""Checked conversion between a flat PyTorch state dict and a model's flat JAX state.

A table is a list of `Rule`s: one PyTorch tensor <-> one or more JAX slots (a parameter path,
plus the layer index inside a stacked parameter). Conversion is pure and strict: every source
key consumed, every parameter filled, every shape right; anything else raises a
`CheckpointMismatch` that names the keys.
"""

import dataclasses
from collections.abc import Mapping, Sequence

import ml_dtypes
import numpy as np

Path = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Slot:
    path: Path
    layer: int | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    source: str
    targets: tuple[Slot, ...]
    transform: object  # one of hyv_jax.convert.transforms


class CheckpointMismatch(ValueError):
    pass


def _listing(title: str, names: Sequence[str], limit: int = 20) -> str:
    names = sorted(map(str, names))
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"{title} ({len(names)}): {', '.join(names[:limit])}{more}"


def _slot_shape(slot: Slot, shapes: Mapping[Path, tuple[int, ...]]) -> tuple[int, ...]:
    shape = tuple(shapes[slot.path])
    return shape[1:] if slot.layer is not None else shape


def check_rules(rules: Sequence[Rule], source_shapes: Mapping[str, tuple], target_shapes: Mapping[Path, tuple], what: str) -> None:
    """Raises CheckpointMismatch unless `rules` map `source_shapes` exactly onto `target_shapes`."""
    problems = []
    wanted = {r.source for r in rules}
    missing = wanted - set(source_shapes)
    unexpected = set(source_shapes) - wanted
    if missing:
        problems.append(_listing("missing keys", missing))
    if unexpected:
        problems.append(_listing("unexpected keys", unexpected))

    filled: dict[Path, set] = {}
    unknown_targets, bad_shapes = [], []
    for rule in rules:
        if any(s.path not in target_shapes for s in rule.targets):
            unknown_targets.append(rule.source)
            continue
        for slot in rule.targets:
            filled.setdefault(slot.path, set()).add(slot.layer)
        if rule.source in source_shapes:
            expected = tuple(rule.transform.torch_shape([_slot_shape(s, target_shapes) for s in rule.targets]))
            if tuple(source_shapes[rule.source]) != expected:
                bad_shapes.append(f"{rule.source} {tuple(source_shapes[rule.source])} (expected {expected})")
    if unknown_targets:
        problems.append(_listing("table entries for parameters the model does not have", unknown_targets))
    if bad_shapes:
        problems.append(_listing("wrong shapes", bad_shapes))

    unfilled = []
    for path, shape in target_shapes.items():
        layers = filled.get(path, set())
        complete = layers == {None} if None in layers or not layers else layers == set(range(shape[0]))
        if not complete:
            unfilled.append("/".join(path))
    if unfilled:
        problems.append(_listing("parameters left unfilled", unfilled))
    if problems:
        raise CheckpointMismatch(f"{what}:\n  " + "\n  ".join(problems))


def torch_to_jax(source, rules: Sequence[Rule], target_shapes: Mapping[Path, tuple], dtype, what: str = "checkpoint") -> dict[Path, np.ndarray]:
    """Fills one numpy array per JAX parameter (in `dtype`, or per path: {path: dtype}) from a
    TensorSource, tensor by tensor. Only floating-point tensors are read (integers would be cast
    silently; fp8 needs its scales, unless it is kept as fp8), and every converted value must be
    finite: NaN/inf in the checkpoint, or values beyond the range of `dtype` (float16), are
    refused with the parameter named."""
    check_rules(rules, {k: source.shape(k) for k in source.keys()}, target_shapes, what)
    out = {path: np.empty(shape, dtype[path] if isinstance(dtype, Mapping) else dtype) for path, shape in target_shapes.items()}
    kept_fp8 = {r.source for r in rules if all(out[s.path].dtype in _FP8 for s in r.targets)}
    for rule in rules:  # what the files say, before anything is read
        _check_float(source, rule.source, source.dtypes.get(rule.source), rule.source in kept_fp8)
    for rule in rules:
        array = source.get(rule.source)
        _check_float(source, rule.source, array.dtype, rule.source in kept_fp8)
        parts = rule.transform.to_jax(array, [_slot_shape(s, target_shapes) for s in rule.targets])
        for slot, part in zip(rule.targets, parts, strict=True):
            target = out[slot.path] if slot.layer is None else out[slot.path][slot.layer]
            with np.errstate(over="ignore"):  # overflow is reported below, with the parameter's name
                target[...] = part
            if not np.isfinite(target).all():
                _refuse_non_finite(source, rule.source, slot, part, target.dtype)
    return out


_FP8 = {np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2)}
_FLOATS = {np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}


def _check_float(source, name: str, dtype, fp8_kept: bool = False) -> None:
    if dtype is None or np.dtype(dtype) in _FLOATS or (fp8_kept and np.dtype(dtype) in _FP8):
        return
    if np.dtype(dtype) in _FP8:
        raise CheckpointMismatch(f"{source.description}: {name} is stored in {np.dtype(dtype)} without a scale; "
                                 f"pass the checkpoint's fp8 scale map (--fp8-map)")
    raise CheckpointMismatch(f"{source.description}: {name} is stored as {np.dtype(dtype)}, not floating point; "
                             f"quantised (integer) checkpoints are not supported: convert the float16/bfloat16/float32 release")


def _refuse_non_finite(source, name: str, slot: Slot, part: np.ndarray, dtype: np.dtype) -> None:
    where = f"{name} (parameter {'/'.join(slot.path)}{'' if slot.layer is None else f', layer {slot.layer}'})"
    bad = ~np.isfinite(np.asarray(part, np.float32))
    if bad.any():
        raise CheckpointMismatch(f"{source.description}: {where} holds {int(bad.sum())} NaN/inf values; the checkpoint is "
                                 f"damaged (or saved from a diverged run): use an intact copy")
    largest = float(np.abs(np.asarray(part, np.float32)).max())
    raise CheckpointMismatch(f"{source.description}: {where} has values up to {largest:.4g}, beyond the range of {dtype} "
                             f"({float(ml_dtypes.finfo(dtype).max):.6g}); convert to bfloat16 or float32 (--dtype)")


def jax_to_torch(state: Mapping[Path, np.ndarray], rules: Sequence[Rule], what: str = "model state") -> dict[str, np.ndarray]:
    """The inverse: a flat PyTorch state dict, in table order, from numpy parameters."""
    torch_shapes = {r.source: r.transform.torch_shape([_slot_shape(s, {p: a.shape for p, a in state.items()}) for s in r.targets])
                    for r in rules if all(s.path in state for s in r.targets)}
    check_rules(rules, torch_shapes, {p: a.shape for p, a in state.items()}, what)
    out = {}
    for rule in rules:
        parts = [np.asarray(state[s.path]) if s.layer is None else np.asarray(state[s.path][s.layer]) for s in rule.targets]
        out[rule.source] = np.ascontiguousarray(rule.transform.to_torch(parts))
    return out


@dataclasses.dataclass(frozen=True)
class Regroup:
    """One tensor of a reference layout <-> its pieces in another layout (cut along axis 0).

    `sizes` None means a pure rename; `reverse` stores the pieces in reverse order (diffusers
    keeps the final layer's modulation as (scale, shift), upstream as (shift, scale))."""

    name: str
    pieces: tuple[str, ...]
    sizes: tuple[int, ...] | None = None
    reverse: bool = False

    def _cut(self, array: np.ndarray, sizes) -> list[np.ndarray]:
        if sum(sizes) != array.shape[0]:
            raise CheckpointMismatch(f"{self.name}: cannot cut {array.shape[0]} rows into {tuple(sizes)}")
        return np.split(array, np.cumsum(sizes)[:-1], axis=0)

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        if self.sizes is None:
            return [array]
        parts = self._cut(array, self.sizes)
        parts = parts[::-1] if self.reverse else parts
        return parts if len(parts) == len(self.pieces) else [np.concatenate(parts, axis=0)]

    def join(self, pieces: Sequence[np.ndarray]) -> np.ndarray:
        if self.sizes is None:
            return pieces[0]
        parts = list(pieces)
        if len(parts) != len(self.sizes):
            parts = self._cut(parts[0], self.sizes[::-1] if self.reverse else self.sizes)
        return np.concatenate(parts[::-1] if self.reverse else parts, axis=0)

    def joined_shape(self, shapes: Sequence[tuple]) -> tuple:
        if self.sizes is None:
            return tuple(shapes[0])
        return (sum(s[0] for s in shapes), *shapes[0][1:])


def regrouped_source(source, regroups: Sequence[Regroup], what: str):
    """A view of `source` (in the pieces' layout) under the reference names. Every key of
    `source` must belong to a regroup; missing pieces surface as missing reference keys."""
    from hyv_jax.convert.checkpoint_source import TensorSource

    owned = {p for g in regroups for p in g.pieces}
    unexpected = set(source.keys()) - owned
    if unexpected:
        raise CheckpointMismatch(f"{what}:\n  " + _listing("unexpected keys", unexpected))
    complete = [g for g in regroups if all(p in source for p in g.pieces)]
    shapes = {g.name: g.joined_shape([source.shape(p) for p in g.pieces]) for g in complete}
    by_name = {g.name: g for g in complete}
    missing = [p for g in regroups if g not in complete for p in g.pieces if p not in source]
    if missing:
        raise CheckpointMismatch(f"{what}:\n  " + _listing("missing keys", missing))
    return TensorSource(shapes, lambda n: by_name[n].join([source.get(p) for p in by_name[n].pieces]), source.description)


def regroup_state(state: Mapping[str, np.ndarray], regroups: Sequence[Regroup]) -> dict[str, np.ndarray]:
    """A reference-layout state dict cut and renamed into the pieces' layout."""
    out = {}
    for g in regroups:
        for piece_name, piece in zip(g.pieces, g.split(state[g.name]), strict=True):
            out[piece_name] = np.ascontiguousarray(piece)
    return out
