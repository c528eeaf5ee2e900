"""Our LoRA adapters (hyv_jax/training/lora.py) <-> LoRA files: export in the diffusers,
original or kohya layout (hyv_jax/lora/writer.py), and adapters initialised from any file
hyv_jax/lora/reader.py reads, to continue training it.

A file loads into the adapters only where they represent it exactly: every change low-rank, on
a kernel the adapters cover, within their rank. Ranks stack where a file's factors do not share
(separate q, k, v adapters of rank r on our fused qkv need rank 3r), rank components that
contribute nothing are dropped (a fused linear1 written block-diagonally splits back to rank r);
spare rank stays with its random A and a zero B, so the loaded model equals base + file, and the
scale is folded into B.
"""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.convert.model_state import param_shapes
from hyv_jax.lora.reader import read_lora
from hyv_jax.lora.table import LoraTable
from hyv_jax.lora.terms import LowRank, LoraUpdates, Target
from hyv_jax.lora.writer import lora_tensors
from hyv_jax.training.lora import LoRADense, lora_layers


def base_table(model: nnx.Module) -> LoraTable:
    """The name table of `model`'s parameters as they are without adapters."""
    shapes = {tuple(p for p in path if p != "base"): shape for path, shape in param_shapes(model).items()
              if path[-1] not in ("lora_a", "lora_b")}
    return LoraTable(model.config, shapes)


def _kernel_path(dotted: str) -> tuple[str, ...]:
    return (*dotted.split("."), "kernel")


def _stacked(layer: LoRADense) -> bool:
    return layer.lora_a.ndim > len(layer.base.in_shape) + 1


def adapter_terms(model: nnx.Module) -> dict[Target, LowRank]:
    """Every adapter as the low-rank change it makes, per layer (float32 on the host)."""
    terms = {}
    for dotted, layer in lora_layers(model).items():
        a, b = layer.lora_a[...], layer.lora_b[...]
        layers = range(a.shape[0]) if _stacked(layer) else (None,)
        for i in layers:  # one layer to the host at a time, not the whole stack
            terms[(_kernel_path(dotted), i)] = LowRank(np.asarray(a if i is None else a[i], np.float32),
                                                       np.asarray(b if i is None else b[i], np.float32), layer.scale)
    return terms


def export_lora(model: nnx.Module, fmt: str = "diffusers", alpha: float | None = None) -> dict[str, np.ndarray]:
    """The model's adapters as a LoRA file's tensors in `fmt` (see hyv_jax/lora/writer.py)."""
    return lora_tensors(adapter_terms(model), base_table(model), fmt, alpha)


def init_adapters(model: nnx.Module, path: str | Path, *, skip_unknown: bool = False) -> LoraUpdates:
    """Sets the injected adapters so that the model computes base + the file's changes (in place)."""
    updates = read_lora(path, base_table(model), skip_unknown=skip_unknown)
    adapters = {_kernel_path(d): layer for d, layer in lora_layers(model).items()}
    full = sorted({"/".join(p) for (p, _), ts in updates.terms.items() if any(not isinstance(t, LowRank) for t in ts)})
    if full:
        raise ValueError(f"{path} changes {full[:5]} with full deltas (.diff, .diff_b or bias factors), which LoRA adapters "
                         "cannot hold; apply it to the weights instead (sample.py --lora) or train from a merged checkpoint")
    uncovered = sorted({".".join(p[:-1]) for p, _ in updates.terms if p not in adapters})
    if uncovered:
        targets = sorted(".".join(p[:-1]) for p in adapters)
        raise ValueError(f"{path} adapts {uncovered[:8]}, which training.lora.targets {targets} does not cover: "
                         "add them with --config.training.lora.targets=...")
    terms = {k: [t.compact() for t in ts] for k, ts in updates.terms.items()}
    needed = {(p, i): sum(t.rank for t in ts) for (p, i), ts in terms.items()}
    too_big = {k: r for k, r in needed.items() if r > adapters[k[0]].rank}
    if too_big:
        (p, i), r = max(too_big.items(), key=lambda kv: kv[1])
        raise ValueError(f"{path}: {'.'.join(p[:-1])}{'' if i is None else f' layer {i}'} needs rank {r} to hold the file "
                         f"exactly (factors that do not share stack their ranks, e.g. separate q/k/v adapters on our fused qkv), "
                         f"but the adapters have rank {adapters[p].rank}: set --config.training.lora.rank={max(too_big.values())}")
    for p, layer in adapters.items():
        a, b = np.array(layer.lora_a[...], np.float32), np.zeros(layer.lora_b.shape, np.float32)
        for i in (range(a.shape[0]) if _stacked(layer) else (None,)):
            parts = terms.get((p, i), [])
            if not parts:
                continue
            down = np.concatenate([t.down for t in parts], axis=-1)
            up = np.concatenate([t.up * np.float32(t.scale / layer.scale) for t in parts], axis=0)
            r = down.shape[-1]
            a_i, b_i = (a, b) if i is None else (a[i], b[i])
            a_i[..., :r], b_i[:r] = down, up
        layer.lora_a[...] = jnp.asarray(a, layer.lora_a[...].dtype)
        layer.lora_b[...] = jnp.asarray(b, layer.lora_b[...].dtype)
    return updates
