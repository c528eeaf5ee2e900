"""A model's parameters as a flat {path: array} dict, and back."""

from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from hyv_jax.parallel.processes import to_host

Path = tuple[str, ...]


def _flatten(tree, prefix=()) -> dict[Path, object]:
    if isinstance(tree, Mapping):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, (*prefix, str(k))))
        return out
    return {prefix: tree}


def _unflatten(flat: Mapping[Path, object]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def param_shapes(model: nnx.Module) -> dict[Path, tuple[int, ...]]:
    """Works on real and on abstract (`nnx.eval_shape`) models."""
    return {p: tuple(v.shape) for p, v in _flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


def params_to_numpy(model: nnx.Module) -> dict[Path, np.ndarray]:
    """The parameters as numpy; sharded over several processes, gathered from all (a collective)."""
    return {p: to_host(v) for p, v in _flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param))).items()}


def params_tree(flat: Mapping[Path, object]) -> dict:
    """The nested pure dict (the Orbax checkpoint tree) of a flat parameter dict."""
    return _unflatten(flat)


def flat_params(tree: Mapping) -> dict[Path, object]:
    return _flatten(tree)


def load_params(model: nnx.Module, flat: Mapping[Path, object]) -> None:
    """Writes arrays into the model's parameters (same paths and shapes; dtype from the model)."""
    state = nnx.state(model, nnx.Param)
    current = _flatten(nnx.to_pure_dict(state))
    if set(current) != set(flat):
        raise ValueError(f"parameter paths differ: missing {sorted(set(current) - set(flat))[:10]}, extra {sorted(set(flat) - set(current))[:10]}")
    for path, value in flat.items():
        if tuple(value.shape) != tuple(current[path].shape):
            raise ValueError(f"{'/'.join(path)}: shape {tuple(value.shape)} != model's {tuple(current[path].shape)}")
    typed = {p: jax.numpy.asarray(v, dtype=current[p].dtype) for p, v in flat.items()}
    nnx.replace_by_pure_dict(state, _unflatten(typed))
    nnx.update(model, state)
