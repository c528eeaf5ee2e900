"""The training loop: steps, logging, checkpoints, and resuming from them."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import jax

from hyv_jax.training.checkpointing import TrainCheckpoints, abstract_like
from hyv_jax.training.metrics_log import MetricsLog
from hyv_jax.training.profiling import StepProfiler
from hyv_jax.training.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class Resumed:
    step: int
    meta: dict
    set_aside: Path | None  # where the checkpoints after `step` went, if there were any


def resume(trainer: Trainer, checkpoints: TrainCheckpoints, batches: Iterator, step: int | None = None) -> Resumed:
    """Restores the train state and the data iterator of `step` (default newest); later
    checkpoints are moved aside so the resumed run writes its own."""
    state, data_state, meta = checkpoints.restore(abstract_like(trainer.state), step, lora=trainer.lora)
    trainer.state = state
    batches.set_state(data_state)
    return Resumed(trainer.step_count, meta, checkpoints.set_aside_after(trainer.step_count))


def train(trainer: Trainer, batches: Iterator, *, steps: int, checkpoints: TrainCheckpoints | None = None,
          checkpoint_every: int = 0, log: MetricsLog | None = None, log_every: int = 1, meta: dict | None = None,
          echo: bool = False, profiler: StepProfiler | None = None) -> list[dict]:
    """Runs until the trainer's step reaches `steps`; returns every step's metrics. `log`
    (process 0's progress bar and TensorBoard) gets every `log_every`-th step; `echo` prints
    those steps' loss, gradient norm and learning rate on this process too."""
    history = []
    meta = dict(meta or {}, lora=trainer.lora)
    try:
        while trainer.step_count < steps:
            batch = next(batches)
            if profiler:
                profiler.before(trainer.step_count + 1)
            m = trainer.step(batch)
            step = trainer.step_count
            if profiler:
                profiler.after(step, trainer.state)
            record = {"step": step, "loss": m.loss, "grad_norm": m.grad_norm, "lr": m.lr}
            if log:
                log.advance()
            if step % log_every == 0 or step == steps:
                if log:
                    record = dict(log.log(step, {k: v for k, v in record.items() if k != "step"}, seconds=m.seconds,
                                          samples=trainer.cfg.batch_size, flops=trainer.flops_per_step), step=step)
                if echo:
                    print(f"process {jax.process_index()} step {step}: loss {m.loss:.9g} grad_norm {m.grad_norm:.9g} "
                          f"lr {m.lr:.9g}", flush=True)
            history.append(record)
            if checkpoints and ((checkpoint_every and step % checkpoint_every == 0) or step == steps):
                checkpoints.save(step, trainer.state, batches.get_state(), meta)
    finally:
        if profiler:
            profiler.stop()
    if checkpoints:
        checkpoints.wait()
    return history
