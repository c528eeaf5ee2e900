"""Training checkpoints with Orbax's CheckpointManager: async, atomic (written to a temporary
directory and renamed on commit), the newest `keep` kept. A checkpoint holds the train state
(trained parameters, optimizer state, step, RNG, EMA), the data iterator's state and a small
JSON of metadata (config, LoRA or full)."""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
    pass


def abstract_like(tree):
    """Shape/dtype/sharding targets of a live state, to restore into the same layout."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class TrainCheckpoints:
    def __init__(self, directory: str | Path, *, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_names=("state", "data", "meta"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save, create=True),
        )

    def steps(self) -> list[int]:
        self.manager.reload()  # see saves made by other processes or earlier runs
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_state: dict, meta: dict, *, force: bool = False) -> bool:
        return self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta)),
            force=force)

    def restore(self, abstract_state, step: int | None = None):
        """(state, data_state, meta) of `step` (default: the newest). A checkpoint that does not
        restore completely is refused, naming the earlier ones to resume from instead."""
        steps = self.steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory} to resume from")
            step = steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; it has steps {steps}")
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
            if out.state is None or out.data is None or out.meta is None:
                raise ValueError("an item is missing")
        except Exception as e:  # orbax raises many kinds for a damaged directory
            earlier = [s for s in steps if s < step]
            hint = (f"resume from an earlier one (steps {earlier}) with --resume_step={earlier[-1]}, or delete "
                    f"{self.directory / str(step)}") if earlier else f"delete {self.directory / str(step)} and start over"
            raise CheckpointError(f"checkpoint step {step} in {self.directory} is corrupt or partial "
                                  f"({type(e).__name__}: {str(e)[:200]}); {hint}") from e
        return out.state, out.data, out.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
