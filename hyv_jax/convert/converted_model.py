"""Loading a converted checkpoint back as a model: the shared part of every converter.

A converter records its model kind and config in the checkpoint's info file; these functions
check the kind, rebuild the abstract model from the config and restore the parameters into it
(optionally straight onto sharded devices)."""

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.convert.model_state import param_shapes, params_tree
from hyv_jax.convert.orbax_io import read_info, restore_params, save_params


def save_converted(directory: str | Path, flat: Mapping, kind: str, config, source: str | Path, dtype, *, overwrite: bool = False,
                   files=(), **extra) -> None:
    """Writes converted parameters with the record `restore_model` reads back, atomically; an
    existing converted `kind` checkpoint there is replaced only with `overwrite` (orbax_io)."""
    save_params(directory, flat, {
        "model": kind,
        "config": dataclasses.asdict(config),
        "source": str(source),
        **extra,
        "dtype": np.dtype(dtype).name,
    }, overwrite=overwrite, files=files)


def checked_info(directory: str | Path, kind: str) -> dict:
    info = read_info(directory)
    if info.get("model") != kind:
        raise ValueError(f"{directory} holds a {info.get('model')!r} checkpoint, not a {kind}; pass the folder converted for this model")
    return info


def _config_hint(info: Mapping, config) -> str:
    """Where the config differs from the one stored with the checkpoint (why shapes differ)."""
    stored, given = info.get("config", {}), dataclasses.asdict(config)
    differ = [k for k in given if k in stored and _plain(stored[k]) != _plain(given[k])]
    if not differ:
        return ""
    return ("; the config differs from the one stored with the checkpoint in " +
            ", ".join(f"{k} (stored {stored[k]!r}, config {given[k]!r})" for k in differ[:6]) +
            ": leave those overrides out, or convert a checkpoint of that size")


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def plain_info(directory: str | Path, kind: str) -> dict:
    """checked_info of a folder without fp8 weights (those load through hyv_jax.loading)."""
    info = checked_info(directory, kind)
    if info.get("fp8"):
        raise ValueError(f"{directory} stores fp8 weights (converted with --fp8): load it with "
                         "hyv_jax.loading.models.load_transformer (sample.py does), or convert the checkpoint without --fp8")
    return info


def read_converted(directory: str | Path, kind: str, config_from_mapping: Callable, abstract_model: Callable) -> tuple[object, dict]:
    """The config and flat parameters (numpy, in the stored dtype) of a converted checkpoint."""
    info = plain_info(directory, kind)
    config = config_from_mapping(info["config"])
    shapes = param_shapes(abstract_model(config))
    return config, restore_params(directory, shapes, {p: np.dtype(info["dtype"]) for p in shapes}, hint=_config_hint(info, config))


def restore_model(directory: str | Path, kind: str, config_from_mapping: Callable, abstract_model: Callable, config=None,
                  shardings: Mapping | None = None) -> nnx.Module:
    """The model with parameters from a converted checkpoint, cast to the config's param dtype.
    `config` overrides the stored one (e.g. another compute dtype); `shardings` maps parameter
    paths to shardings so each parameter lands directly on its devices."""
    info = plain_info(directory, kind)
    config = config or config_from_mapping(info["config"])
    graphdef, state = nnx.split(abstract_model(config))
    shapes = param_shapes(nnx.merge(graphdef, state))
    flat = restore_params(directory, shapes, {p: jnp.dtype(config.param_dtype) for p in shapes}, shardings, _config_hint(info, config))
    nnx.replace_by_pure_dict(state, params_tree(flat))
    return nnx.merge(graphdef, state)
