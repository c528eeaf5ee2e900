"""Training checkpoints with Orbax's CheckpointManager: async, atomic (written to a temporary
directory and renamed on commit), the newest `keep` kept. A checkpoint holds the train state
(trained parameters, optimizer state, step, RNG, EMA), the data iterator's state and a small
JSON of metadata (config, LoRA or full, the state's shapes).

Every process of a multi-host job calls these methods together (Orbax writes each process's
shards); files outside Orbax's are moved by process 0.

Refusals say what to do: a checkpoint written by another model or training setup is named as
such (not as damaged); a damaged one names the earlier steps to resume from; resuming from an
earlier step moves the later checkpoints aside (kept, not deleted) so that new saves replace
them and rotation only removes the resumed timeline's; a save that cannot fit or fails says so
in one line.
"""

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Self

import jax
import orbax.checkpoint as ocp

from hyv_jax.parallel.processes import barrier, is_main

SUPERSEDED = "superseded"  # checkpoints after a step resumed from earlier go below this folder


class CheckpointError(ValueError):
    """A refusal or failure whose message says what to do (command lines print it as one line)."""


def _brief(error: Exception) -> str:
    """An error in one line of bounded length: orbax's messages lead with paths and end with
    the cause (e.g. "No space left on device")."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= 300 else f"{text[:140]} ... {text[-140:]}"


class _ReportedByTrainCheckpoints(logging.Filter):
    """Orbax logs a failed background save from each of its threads, traceback and all, before
    re-raising it to the caller; TrainCheckpoints reports it once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname)


_REPORTED_BY_US = _ReportedByTrainCheckpoints()


def abstract_like(tree):
    """Shape/dtype/sharding targets of a live state, to restore into the same layout."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


def state_shapes(tree) -> dict[str, list[int]]:
    """{path: shape} of every array of a (live or abstract) state."""
    return {jax.tree_util.keystr(path): list(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _training_kind(lora) -> str:
    return "LoRA adapters (training.lora.enabled=True)" if lora else "full training (training.lora.enabled=False)"


class TrainCheckpoints:
    def __init__(self, directory: str | Path, *, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_names=("state", "data", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True),
        )
        logging.getLogger("absl").addFilter(_REPORTED_BY_US)

    def steps(self) -> list[int]:
        self.manager.reload()  # see saves made by other processes or earlier runs
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict, meta: dict, *, force: bool = False) -> bool:
        """Starts writing checkpoint `step` (async: `wait()` finishes it); raises CheckpointError
        if an earlier save failed or the disk cannot hold this one."""
        self._check_space(state)
        try:
            self.manager.check_for_errors()  # an earlier async save's failure
            return self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(dict(meta, state_shapes=state_shapes(state)))), force=force)
        except Exception as e:  # noqa: BLE001 - orbax re-raises a background thread's error
            raise self._save_failed(e) from e

    def _check_space(self, state) -> None:
        needed = sum(x.nbytes for x in jax.tree.leaves(state))
        folder = self.directory
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise CheckpointError(
                f"not enough disk space for a checkpoint in {self.directory}: it needs {needed / 2**20:.1f} MiB, "
                f"{free / 2**20:.1f} MiB are free; free some space, keep fewer checkpoints "
                f"(training.checkpoint.keep) or pass another --workdir, then --resume")

    def _save_failed(self, error: Exception) -> CheckpointError:
        return CheckpointError(f"saving a checkpoint in {self.directory} failed ({_brief(error)}); the committed "
                               "checkpoints are intact: fix the cause (disk space, permissions) and --resume")

    def read_meta(self, step: int) -> dict:
        try:
            meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            if meta is None:
                raise ValueError("the meta item is missing")
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds for a damaged directory
            raise self._damaged(step, e) from e
        return meta

    def restore(self, abstract_state, step: int | None = None, *, lora: bool | None = None):
        """(state, data_state, meta) of `step` (default: the newest). Refuses a checkpoint of
        the other training kind (`lora`: whether the caller trains LoRA; None: either), of
        other shapes (another model config), or one that does not restore completely."""
        steps = self.steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory} to resume from")
            step = steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; it has steps {steps}")
        meta = self.read_meta(step)
        where = f"checkpoint step {step} in {self.directory}"
        if lora is not None and "lora" in meta and meta["lora"] != lora:
            raise CheckpointError(f"{where} holds {_training_kind(meta['lora'])}, not {_training_kind(lora)}: use the "
                                  "setting it was written with, or a new --workdir (a full run has no adapters to "
                                  "export; its weights are in WORKDIR/final/transformer)")
        stored, wanted = meta.get("state_shapes"), state_shapes(abstract_state)
        if stored is not None and stored != wanted:
            differ = [f"{k}: {tuple(stored[k])} in the checkpoint, {tuple(wanted[k])} now"
                      for k in sorted(set(stored) & set(wanted)) if stored[k] != wanted[k]]
            differ += [f"{k} only in the checkpoint" for k in sorted(set(stored) - set(wanted))]
            differ += [f"{k} not in the checkpoint" for k in sorted(set(wanted) - set(stored))]
            raise CheckpointError(f"{where} was written with another model config ({'; '.join(differ[:3])}"
                                  f"{f'; {len(differ) - 3} more' if len(differ) > 3 else ''}): resume with the config it "
                                  f"was trained with (stored in {self.directory / str(step)}/meta), or use a new --workdir")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
            if out.state is None or out.data is None:
                raise ValueError("an item is missing")
        except Exception as e:  # noqa: BLE001
            raise self._damaged(step, e) from e
        return out.state, out.data, meta

    def _damaged(self, step: int, error: Exception) -> CheckpointError:
        earlier = [s for s in self.steps() if s < step]
        hint = (f"resume from an earlier one (steps {earlier}) with --resume_step={earlier[-1]} (the later "
                f"checkpoints are then moved to {self.directory / SUPERSEDED})") if earlier else "start a new run"
        return CheckpointError(f"checkpoint step {step} in {self.directory} is damaged or incomplete ({_brief(error)}); {hint}")

    def set_aside_after(self, step: int) -> Path | None:
        """Moves the checkpoints after `step` (a run resumed from `step` would write them anew)
        to superseded/after_<step>_<time>/ and returns that folder (None: there were none)."""
        later = [s for s in self.manager.all_steps() if s > step]  # as every process listed them in restore()
        if not later:
            return None
        target = self.directory / SUPERSEDED / f"after_{step}_{time.strftime('%Y%m%d-%H%M%S')}"
        barrier("checkpoints listed")  # no process lists them after process 0 has moved them
        if is_main():
            target.mkdir(parents=True)
            for s in later:
                (self.directory / str(s)).rename(target / str(s))
        barrier("checkpoints set aside")
        self.manager.reload()
        return target

    def wait(self) -> None:
        """Blocks until the last save is written; raises CheckpointError if it failed."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            raise self._save_failed(e) from e

    def close(self) -> None:
        """Finishes a save in flight (raising CheckpointError if it failed) and stops Orbax's threads."""
        try:
            self.manager.close()
        except Exception as e:  # noqa: BLE001
            raise self._save_failed(e) from e

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if error is None:
            self.close()
        else:  # finish and stop anyway, but report the error that ended the block
            with contextlib.suppress(Exception):
                self.close()
