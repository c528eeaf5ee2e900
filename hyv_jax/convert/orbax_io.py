"""Converted weights on disk: an Orbax checkpoint of the parameter tree plus a JSON record of
what it holds (model kind, config, source, dtype, the files written).

A checkpoint is written into a new hidden folder beside its target and renamed into place only
when complete, so an interrupted or failed write (a full disk, a kill) never leaves a folder that
looks converted but is not. An existing target is replaced only when asked (`overwrite`), only
when it is a converted checkpoint of the same model and holds nothing else, and only after the
new one is whole."""

import json
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from hyv_jax.convert.model_state import flat_params, params_tree
from hyv_jax.parallel.processes import barrier, is_main

INFO_FILE = "hyv_jax.json"
PARAMS_DIR = "params"


def check_replaceable(directory: str | Path, kind: str, overwrite: bool, files: Sequence[str] = ()) -> None:
    """Raises unless a checkpoint of `kind` may be written to `directory`: it does not exist, is
    empty, or (with `overwrite`) holds a converted `kind` checkpoint and nothing else (`files`:
    names of extra files this write puts there, e.g. tokenizer files)."""
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a folder; choose another output folder")
    entries = sorted(p.name for p in directory.iterdir())
    if not entries:
        return
    try:
        info = json.loads((directory / INFO_FILE).read_text())
        held = info["model"]
    except (OSError, ValueError, TypeError, KeyError):
        raise FileExistsError(f"{directory} exists and is not a converted hyv_jax checkpoint (it holds {_names(entries)}); "
                              f"it is never replaced: choose another output folder") from None
    ours = {INFO_FILE, PARAMS_DIR, *info.get("files", ()), *files}
    foreign = [e for e in entries if e not in ours]
    if foreign:
        raise FileExistsError(f"{directory} holds a converted {held} checkpoint and also {_names(foreign)}, which a conversion "
                              f"does not write; it is not replaced: move those files or choose another output folder")
    if held != kind:
        raise FileExistsError(f"{directory} holds a converted {held} checkpoint, not a {kind}; it is not replaced by another "
                              f"model: choose another output folder")
    if not overwrite:
        raise FileExistsError(f"{directory} already holds a converted {kind} checkpoint; pass --overwrite to replace it (the "
                              f"old one stays until the new one is complete)")


def _names(entries: Sequence[str], limit: int = 5) -> str:
    return ", ".join(entries[:limit]) + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def save_params(directory: str | Path, flat: Mapping[tuple[str, ...], np.ndarray], info: Mapping, *, overwrite: bool = False,
                files: Sequence[str | Path] = ()) -> None:
    """Writes the parameters, `info` (which must name the "model" kind) and copies of `files`
    into a new folder beside `directory`, then renames it to `directory` (see the module doc for
    when an existing one is replaced)."""
    directory = Path(directory).absolute()
    names = [Path(f).name for f in files]
    check_replaceable(directory, info["model"], overwrite, names)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_folder(directory)
    try:
        checkpointer = ocp.StandardCheckpointer()  # every process of a multi-host job saves together
        checkpointer.save(staging / PARAMS_DIR, params_tree(flat))
        checkpointer.wait_until_finished()
        if is_main():  # one process writes the record and renames
            for f in files:
                shutil.copyfile(f, staging / Path(f).name)
            (staging / INFO_FILE).write_text(json.dumps({**info, "files": names}, indent=2, default=str))
            check_replaceable(directory, info["model"], overwrite, names)  # again: time has passed
            _move_into_place(staging, directory)
    except BaseException:
        if is_main():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    barrier(f"saved {directory}")


def _staging_folder(directory: Path) -> Path:
    """The hidden folder beside `directory` the checkpoint is written into: a new one, or with
    several processes the one name they all write to (cleared by process 0 first)."""
    if jax.process_count() == 1:
        return _new_folder(directory, "partial")
    path = directory.parent / f".{directory.name[:100]}.partial"
    if is_main():
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir()
    barrier(f"staging {directory}")
    return path


def _new_folder(beside: Path, what: str) -> Path:
    """A new hidden folder next to `beside` (same file system: renames are atomic), made with
    the usual permissions."""
    for _ in range(100):
        path = beside.parent / f".{beside.name[:100]}.{secrets.token_hex(4)}.{what}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder beside {beside}")


def _move_into_place(staging: Path, directory: Path) -> None:
    """Renames the complete `staging` folder to `directory`; a previous `directory` is moved
    aside first and deleted only once the new one is in place."""
    if not directory.exists():
        os.rename(staging, directory)
        return
    if not any(directory.iterdir()):
        directory.rmdir()
        os.rename(staging, directory)
        return
    old = _new_folder(directory, "replaced")
    os.rename(directory, old / directory.name)
    try:
        os.rename(staging, directory)
    except BaseException:
        os.rename(old / directory.name, directory)
        old.rmdir()
        raise
    shutil.rmtree(old)


def read_info(directory: str | Path) -> dict:
    path = Path(directory) / INFO_FILE
    if not path.exists():
        raise FileNotFoundError(f"{directory} is not a converted hyv_jax checkpoint (no {INFO_FILE}); run convert_torch_weights.py first")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged ({error}); convert the checkpoint again") from None


def _read_error(params: Path, error: Exception) -> ValueError:
    return ValueError(f"cannot read the parameters in {params} ({type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}); convert the checkpoint again")


def stored_shapes(directory: str | Path) -> dict[tuple[str, ...], tuple[int, ...]]:
    """{parameter path: shape} as stored, from the checkpoint's metadata (no array is read)."""
    params = Path(directory).absolute() / PARAMS_DIR
    try:
        tree = ocp.StandardCheckpointer().metadata(params).item_metadata.tree
    except Exception as error:  # Orbax raises several types for a missing or damaged folder
        raise _read_error(params, error) from error
    return {p: tuple(m.shape) for p, m in flat_params(tree).items()}


# Orbax's per-array restore costs ~1.5 ms an array plus ~0.1 s of metadata, most of a small
# model's load (the tiny default's VAE: 244 arrays, 0.5 s). Up to this size on disk a
# single-process restore reads the whole tree into host memory in one call (0.1 s) and places
# it in one batched device_put; larger ones go to their shardings array by array.
SMALL_CHECKPOINT_BYTES = 64 * 2**20


def _bytes_on_disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _check_fit(directory: Path, shapes: Mapping, stored: Mapping, hint: str) -> None:
    """Parameters missing, extra or of another shape than `shapes`, named (ValueError)."""
    problems = [f"{'/'.join(p)} is {stored[p]} in the checkpoint, {tuple(s)} in the model" for p, s in shapes.items()
                if p in stored and stored[p] != tuple(s)]
    problems += [f"{'/'.join(p)} is missing from the checkpoint" for p in shapes if p not in stored]
    problems += [f"{'/'.join(p)} is in the checkpoint but not in the model" for p in stored if p not in shapes]
    if problems:
        raise ValueError(f"{directory} does not fit the model: {'; '.join(problems[:3])}"
                         f"{f' ({len(problems)} parameters in all)' if len(problems) > 3 else ''}{hint}")


def restore_params(directory: str | Path, shapes: Mapping[tuple[str, ...], tuple], dtypes: Mapping, shardings: Mapping | None = None,
                   hint: str = "") -> dict:
    """Restores a flat {path: jax.Array}; `shardings` (path -> Sharding) places each parameter
    directly on its devices, so the full model never sits on one device. Parameters missing,
    extra or of another shape than `shapes` are named before anything is placed (`hint` says
    why they may differ)."""
    directory = Path(directory).absolute()
    params = directory / PARAMS_DIR
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {p: (shardings or {}).get(p, default) for p in shapes}
    if jax.process_count() == 1 and params.is_dir() and _bytes_on_disk(params) <= SMALL_CHECKPOINT_BYTES:
        try:
            with ocp.PyTreeCheckpointer() as checkpointer:
                host = flat_params(checkpointer.restore(params))
        except Exception as error:  # Orbax raises several types for a damaged folder
            raise _read_error(params, error) from error
        _check_fit(directory, shapes, {p: np.shape(a) for p, a in host.items()}, hint)
        paths = list(shapes)
        placed = jax.device_put([np.asarray(host[p]).astype(dtypes[p], copy=False) for p in paths], [target[p] for p in paths])
        return dict(zip(paths, placed))
    _check_fit(directory, shapes, stored_shapes(directory), hint)
    abstract = {p: jax.ShapeDtypeStruct(tuple(s), dtypes[p], sharding=target[p]) for p, s in shapes.items()}
    restored = ocp.StandardCheckpointer().restore(params, params_tree(abstract))
    return flat_params(restored)
