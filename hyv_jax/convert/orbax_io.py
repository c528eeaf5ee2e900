"""Converted weights on disk: an Orbax checkpoint of the parameter tree plus a JSON record of
what it holds (model kind, config, source, dtype)."""

import json
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from hyv_jax.convert.model_state import flat_params, params_tree

INFO_FILE = "hyv_jax.json"
PARAMS_DIR = "params"


def save_params(directory: str | Path, flat: Mapping[tuple[str, ...], np.ndarray], info: Mapping) -> None:
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(directory / PARAMS_DIR, params_tree(flat), force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:  # every process of a multi-host job saves together; one writes the record
        (directory / INFO_FILE).write_text(json.dumps(dict(info), indent=2, default=str))


def read_info(directory: str | Path) -> dict:
    path = Path(directory) / INFO_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a converted hyv_jax checkpoint (no {INFO_FILE}); run convert_torch_weights.py first")
    return json.loads(path.read_text())


def restore_params(directory: str | Path, shapes: Mapping[tuple[str, ...], tuple], dtypes: Mapping, shardings: Mapping | None = None) -> dict:
    """Restores a flat {path: jax.Array}; `shardings` (path -> Sharding) places each parameter
    directly on its devices, so the full model never sits on one device."""
    directory = Path(directory).absolute()
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {
        p: jax.ShapeDtypeStruct(tuple(s), dtypes[p], sharding=(shardings or {}).get(p, default)) for p, s in shapes.items()
    }
    restored = ocp.StandardCheckpointer().restore(directory / PARAMS_DIR, params_tree(abstract))
    return flat_params(restored)
