"""From a config to a ready Trainer, and from a Trainer to files others load (a converted
transformer checkpoint for sample.py, a diffusers LoRA)."""

from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND, abstract_transformer, restore_transformer
from hyv_jax.lora.writer import save_lora
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.parallel.logical_axes import param_shardings
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.processes import barrier, is_main, to_host
from hyv_jax.training.caption_dropout import load_negative_prompt
from hyv_jax.training.lora import inject_lora, merge_lora
from hyv_jax.training.lora_files import export_lora, init_adapters
from hyv_jax.training.trainer import Trainer


def build_model(config, mesh: Mesh, init_dir: str | Path | None = None, init_lora: str | Path | None = None) -> HunyuanVideoTransformer:
    """The transformer of `config` (random init, or restored sharded from a converted
    checkpoint), with LoRA adapters when training.lora.enabled, set from the LoRA file
    `init_lora` (any format hyv_jax/lora reads) when given."""
    tcfg = TransformerConfig.from_mapping(config.transformer)
    lora = config.training.lora
    if init_dir is not None:
        model = restore_transformer(init_dir, tcfg, shardings=param_shardings(abstract_transformer(tcfg), mesh))
    elif lora.enabled:
        raise ValueError("LoRA training adapts pretrained weights: pass the converted transformer with --init")
    else:
        model = HunyuanVideoTransformer(tcfg, rngs=nnx.Rngs(config.training.seed))
    if init_lora is not None and not lora.enabled:
        raise ValueError("--init-lora continues LoRA training: pass --config.training.lora.enabled=True")
    if lora.enabled:
        inject_lora(model, rank=lora.rank, alpha=lora.alpha, targets=tuple(lora.targets), rngs=nnx.Rngs(config.training.seed + 1))
    if init_lora is not None:
        init_adapters(model, init_lora)
    return model


def build_trainer(config, plan: ParallelPlan, init_dir: str | Path | None = None, init_lora: str | Path | None = None,
                  data_dir: str | Path | None = None) -> Trainer:
    """A Trainer on `plan` (ParallelPlan.from_config(config.parallel): mesh and context strategy);
    with caption dropout it reads the negative prompt's encodings stored with the data in `data_dir`."""
    dropout = config.training.caption_dropout > 0
    if dropout and data_dir is None:
        raise ValueError("training.caption_dropout > 0 needs the prepared data's folder (its negative prompt encodings)")
    negative_prompt = load_negative_prompt(data_dir) if dropout else None
    return Trainer(build_model(config, plan.mesh, init_dir, init_lora), config.training, plan,
                   lora=bool(config.training.lora.enabled), negative_prompt=negative_prompt)


def with_host_adapters(model: nnx.Module) -> nnx.Module:
    """The model with its LoRA adapters gathered into numpy arrays (from every process's
    devices: a collective), the rest as it is: what the diffusers export reads."""
    graphdef, adapters, rest = nnx.split(model, nnx.LoRAParam, ...)
    return nnx.merge(graphdef, jax.tree.map(to_host, adapters), rest)


def save_trained(trainer: Trainer, out_dir: str | Path, *, use_ema: bool = False) -> dict[str, Path]:
    """Writes the trained transformer (LoRA merged in) as a converted checkpoint that
    `restore_transformer` / sample.py load, and for LoRA also `lora.safetensors` in the
    diffusers layout. Returns the written paths. Call it when training is over, on every
    process (the weights are gathered from all; process 0 writes the files): merging may write
    into the trainer's frozen base weights."""
    out_dir = Path(out_dir)
    model = trainer.model(use_ema)
    written = {}
    if trainer.lora:
        written["lora"] = out_dir / "lora.safetensors"
        adapters = export_lora(with_host_adapters(model))
        if is_main():
            out_dir.mkdir(parents=True, exist_ok=True)
            save_lora(written["lora"], adapters)
        model = merge_lora(model)
    save_converted(out_dir / "transformer", params_to_numpy(model), MODEL_KIND, model.config, "train.py",
                   jnp.dtype(model.config.param_dtype), overwrite=True)
    written["transformer"] = out_dir / "transformer"
    barrier("trained model written")
    return written
