"""The `training` section shared by the model configs (train.py reads it)."""

import ml_collections

from hyv_jax.training.lora import DEFAULT_TARGETS


def get_training_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            seed=0,
            steps=1000,
            batch_size=1,  # global batch, split over the data and fsdp axes of config.parallel.mesh
            # flow matching: t = shift-warped sigmoid(N(time_mean, time_std)); loss weighting
            time_mean=0.0,
            time_std=1.0,
            time_shift=1.0,
            loss_weighting="none",
            guidance=1.0,  # embedded guidance scale fed to guidance-distilled models (x1000)
            # fraction of samples trained on the negative prompt (the unconditional branch of true CFG)
            caption_dropout=0.0,
            ema_decay=0.0,  # 0: no EMA copy of the trained parameters
            # total_steps: the schedule's length (-1: training.steps, so overriding steps stretches it)
            optimizer=dict(lr=1e-4, warmup_steps=100, total_steps=-1, schedule="cosine", b1=0.9, b2=0.999,
                           eps=1e-8, weight_decay=0.0, grad_clip=1.0),
            lora=dict(enabled=False, rank=32, alpha=32.0, targets=DEFAULT_TARGETS),
            checkpoint=dict(every=500, keep=3, async_save=True),
            log_every=10,
            log_all_processes=False,  # every process also prints its logged steps' loss (to compare hosts)
            data=dict(shuffle_seed=0, num_epochs=-1),
        )
    )
