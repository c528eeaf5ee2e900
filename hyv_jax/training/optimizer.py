"""AdamW with linear warm-up, a decay schedule and global-norm clipping."""

from collections.abc import Callable

import optax

SCHEDULES = ("constant", "cosine", "linear")


def learning_rate_schedule(lr: float, warmup_steps: int, total_steps: int, schedule: str) -> Callable:
    warmup = optax.linear_schedule(0.0, lr, max(warmup_steps, 1))
    decay_steps = max(total_steps - warmup_steps, 1)
    if schedule == "constant":
        after = optax.constant_schedule(lr)
    elif schedule == "cosine":
        after = optax.cosine_decay_schedule(lr, decay_steps, alpha=0.0)
    elif schedule == "linear":
        after = optax.linear_schedule(lr, 0.0, decay_steps)
    else:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {SCHEDULES}")
    return optax.join_schedules([warmup, after], [warmup_steps]) if warmup_steps > 0 else after


def make_optimizer(cfg, training_steps: int) -> tuple[optax.GradientTransformation, Callable]:
    """cfg: the `training.optimizer` section (lr, warmup_steps, total_steps, schedule, b1, b2,
    eps, weight_decay, grad_clip); the schedule spans `total_steps`, or `training_steps` when
    that is -1. Returns (optimizer, schedule)."""
    total_steps = training_steps if cfg.total_steps == -1 else cfg.total_steps
    schedule = learning_rate_schedule(cfg.lr, cfg.warmup_steps, total_steps, cfg.schedule)
    chain = []
    if cfg.grad_clip:
        chain.append(optax.clip_by_global_norm(cfg.grad_clip))
    chain.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    return optax.chain(*chain), schedule
