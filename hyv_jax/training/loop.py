"""The training loop: steps, logging, checkpoints, and resuming from them."""

from collections.abc import Iterator

from hyv_jax.training.checkpointing import TrainCheckpoints, abstract_like
from hyv_jax.training.metrics_log import MetricsLog
from hyv_jax.training.trainer import Trainer


def resume(trainer: Trainer, checkpoints: TrainCheckpoints, batches: Iterator, step: int | None = None) -> dict:
    """Restores the train state and the data iterator of `step` (default newest); returns the
    checkpoint's metadata."""
    state, data_state, meta = checkpoints.restore(abstract_like(trainer.state), step)
    if meta.get("lora") != trainer.lora:
        raise ValueError(f"the checkpoint was written by {'LoRA' if meta.get('lora') else 'full'} training; "
                         f"resume it with training.lora.enabled={meta.get('lora')}")
    trainer.state = state
    batches.set_state(data_state)
    return meta


def train(trainer: Trainer, batches: Iterator, *, steps: int, checkpoints: TrainCheckpoints | None = None,
          checkpoint_every: int = 0, log: MetricsLog | None = None, log_every: int = 1, meta: dict | None = None) -> list[dict]:
    """Runs until the trainer's step reaches `steps`; returns the logged metrics."""
    history = []
    meta = dict(meta or {}, lora=trainer.lora)
    try:
        while trainer.step_count < steps:
            batch = next(batches)
            m = trainer.step(batch)
            step = trainer.step_count
            record = {"step": step, "loss": m.loss, "grad_norm": m.grad_norm, "lr": m.lr}
            if log:
                log.advance()
                if step % log_every == 0 or step == steps:
                    record = dict(log.log(step, {k: v for k, v in record.items() if k != "step"}, seconds=m.seconds,
                                          samples=trainer.cfg.batch_size, flops=trainer.flops_per_step), step=step)
            history.append(record)
            if checkpoints and ((checkpoint_every and step % checkpoint_every == 0) or step == steps):
                checkpoints.save(step, trainer.state, batches.get_state(), meta)
    finally:
        if checkpoints:
            checkpoints.wait()
    return history
