"""Merging LoRA files into a model's weights where they live: in their sharding, one layer of
a stacked (scanned) parameter at a time, the parameter's buffer donated, so memory holds the
weights once plus one layer's delta.

Call it after the weights are loaded and before any fp8 quantisation; it does not care how the
model was loaded (random, restored, sharded over a mesh, several processes).
"""

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from hyv_jax.convert.custom_checkpoint import abstract_custom
from hyv_jax.convert.model_state import param_shapes
from hyv_jax.convert.transformer_checkpoint import abstract_transformer
from hyv_jax.lora.reader import read_lora
from hyv_jax.lora.table import LoraTable
from hyv_jax.lora.terms import LowRank, LoraUpdates
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.nn.stack import in_host_memory

Lora = tuple[str | Path, float]  # (file, scale)


def merge_lora_files(model: nnx.Module, loras: Iterable[Lora], *, skip_unknown: bool = False) -> list[LoraUpdates]:
    """Adds scale * (each file's changes) to the weights of `model` (a HunyuanVideo or
    HunyuanCustom transformer), in place; several files add up. Every file is read and checked
    before any weight changes. Returns what each file held (for a summary line)."""
    read = _read(LoraTable(model.config, param_shapes(model)), loras, skip_unknown)
    merge_updates(model, read)
    return [updates for updates, _ in read]


def read_lora_files(config: TransformerConfig, loras: Iterable[Lora], *,
                    skip_unknown: bool = False) -> list[tuple[LoraUpdates, float]]:
    """Reads and checks the files against the model `config` describes (TransformerConfig or
    CustomTransformerConfig), before any model exists; `merge_updates` applies them later."""
    abstract = abstract_custom(config) if isinstance(config, CustomTransformerConfig) else abstract_transformer(config)
    return _read(LoraTable(config, param_shapes(abstract)), loras, skip_unknown)


def _read(table: LoraTable, loras: Iterable[Lora], skip_unknown: bool) -> list[tuple[LoraUpdates, float]]:
    return [(read_lora(path, table, skip_unknown=skip_unknown), float(scale)) for path, scale in loras]


def merge_updates(model: nnx.Module, updates: Sequence[tuple[LoraUpdates, float]]) -> None:
    """Adds multiplier * changes for each (LoraUpdates, multiplier), in place. A parameter held
    in host memory (weights staged there before fp8 quantisation or offload) is merged on its
    devices one parameter at a time and put back, as device programs cannot update host memory."""
    variables = {tuple(str(p) for p in path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    terms: dict[tuple, list] = {}  # per parameter, in the order given (the sums round in that order)
    for lora, multiplier in updates:
        for (path, layer), path_terms in lora.terms.items() if multiplier != 0 else ():
            terms.setdefault(path, []).extend((layer, term, multiplier) for term in path_terms)
    for path, path_terms in terms.items():
        var = variables[path]
        original = var[...]
        host = in_host_memory(original)
        # a host parameter is merged in a device copy and the original freed only once the
        # merged one is back: a merge that fails leaves the model as it was
        value = _in_memory(original, "device") if host else original
        for layer, term, multiplier in path_terms:
            value = _add_term(value, layer, term, multiplier)
        if host:
            merged = _in_memory(value, "pinned_host")
            value.delete()
            original.delete()
            value = merged
        var.set_value(value)


def _in_memory(array: jax.Array, memory_kind: str) -> jax.Array:
    """A copy of `array` in another memory of the same devices."""
    return jax.device_put(array, array.sharding.with_memory_kind(memory_kind))


def _add_term(param: jax.Array, layer: int | None, term, multiplier: float) -> jax.Array:
    shardings = _shardings(param, layer is not None)
    index = None if layer is None else jnp.int32(layer)
    if isinstance(term, LowRank):
        return _add_low_rank(param, index, term.down, term.up, jnp.float32(term.scale * multiplier), shardings)
    return _add_full(param, index, term.delta(), jnp.float32(multiplier), shardings)


def _shardings(param: jax.Array, stacked: bool):
    """(the parameter's sharding, the sharding of one layer's delta) when it lives on a mesh."""
    sharding = getattr(param, "sharding", None)
    if not isinstance(sharding, NamedSharding):
        return None
    spec = tuple(sharding.spec) + (None,) * (param.ndim - len(sharding.spec))
    return sharding, NamedSharding(sharding.mesh, PartitionSpec(*(spec[1:] if stacked else spec)))


def _updated(param, index, delta, shardings):
    """param + delta (one layer when `index` is given), summed in float32, in param's dtype."""
    if shardings is not None:  # each device computes only its shard of the delta
        delta = jax.lax.with_sharding_constraint(delta, shardings[1])
    current = param if index is None else param[index]
    new = (current.astype(jnp.float32) + delta).astype(param.dtype)
    out = new if index is None else param.at[index].set(new)
    return out if shardings is None else jax.lax.with_sharding_constraint(out, shardings[0])


@functools.partial(jax.jit, donate_argnums=0, static_argnums=5)
def _add_low_rank(param, index, down, up, scale, shardings):
    delta = jnp.tensordot(down.astype(jnp.float32), up.astype(jnp.float32), axes=1, precision=jax.lax.Precision.HIGHEST)
    return _updated(param, index, scale * delta, shardings)


@functools.partial(jax.jit, donate_argnums=0, static_argnums=4)
def _add_full(param, index, delta, multiplier, shardings):
    return _updated(param, index, multiplier * delta.astype(jnp.float32), shardings)
