"""LoRA adapters on the transformer's linears: inject, merge.

An adapted Dense computes base(x) + (alpha / rank) * (x A) B with A (*in_shape, rank) and
B (rank, *out_shape); B starts at zero so an injected model equals its base. Inside the
stacked blocks A and B carry the same leading `layers` axis as the kernel, so the scan slices
them with the block. Adapters are `nnx.LoRAParam`s: training differentiates only those.
"""

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.dense import Dense
from hyv_jax.nn.params import make_param, zeros

# Attention and MLP linears of both block kinds, as paths below the model.
DEFAULT_TARGETS = (
    "double_blocks.img_attn_qkv", "double_blocks.img_attn_proj", "double_blocks.img_mlp.fc1", "double_blocks.img_mlp.fc2",
    "double_blocks.txt_attn_qkv", "double_blocks.txt_attn_proj", "double_blocks.txt_mlp.fc1", "double_blocks.txt_mlp.fc2",
    "single_blocks.linear1_qkv", "single_blocks.linear1_mlp", "single_blocks.linear2_attn", "single_blocks.linear2_mlp",
)


class LoRADense(nnx.Module):
    def __init__(self, base: Dense, rank: int, scale: float, *, rngs: nnx.Rngs):
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base
        self.rank = rank
        self.scale = scale
        param_dtype = base.kernel[...].dtype
        n_in, n_out = len(base.in_shape), len(base.out_shape)
        axes = base.kernel.get_metadata().get("out_sharding") or (None,) * base.kernel.ndim
        n_lead = base.kernel.ndim - n_in - n_out
        lead, lead_axes = base.kernel.shape[:n_lead], tuple(axes[:n_lead])
        in_axes, out_axes = tuple(axes[n_lead:n_lead + n_in]), tuple(axes[n_lead + n_in:])

        def lora_param(init, shape, names):
            p = make_param(rngs, init, shape, names, param_dtype)
            return nnx.LoRAParam(p[...], out_sharding=p.get_metadata()["out_sharding"], eager_sharding=False)

        # A's init draws over the stacked shape: entries are i.i.d., so each layer is independent.
        self.lora_a = lora_param(_fan_in_after(n_lead, n_in), (*lead, *base.in_shape, rank), (*lead_axes, *in_axes, None))
        self.lora_b = lora_param(zeros, (*lead, rank, *base.out_shape), (*lead_axes, None, *out_axes))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        n_in = len(self.base.in_shape)
        dtype = self.base.dtype
        h = jax.lax.dot_general(x.astype(dtype), self.lora_a[...].astype(dtype),
                                ((tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))), ((), ())),
                                preferred_element_type=jnp.float32)
        d = jax.lax.dot_general(h.astype(dtype), self.lora_b[...].astype(dtype),
                                (((h.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        return (y.astype(jnp.float32) + self.scale * d).astype(y.dtype)

    def delta(self) -> jax.Array:
        """scale * A B in the kernel's layout (*layers, *in_shape, *out_shape), float32."""
        a, b = self.lora_a[...].astype(jnp.float32), self.lora_b[...].astype(jnp.float32)
        n_lead = a.ndim - len(self.base.in_shape) - 1
        lead = a.shape[:n_lead]
        a2 = a.reshape(*lead, -1, self.rank)
        b2 = b.reshape(*lead, self.rank, -1)
        return (self.scale * (a2 @ b2)).reshape(self.base.kernel.shape)


def _fan_in_after(n_lead: int, n_in: int):
    """N(0, 1/fan_in) with fan_in over the input dims that follow `n_lead` stacking dims."""
    def init(key, shape, dtype):
        fan_in = 1
        for s in shape[n_lead:n_lead + n_in]:
            fan_in *= s
        return (jax.random.normal(key, shape, jnp.float32) / jnp.sqrt(fan_in)).astype(dtype)
    return init


def _modules_at(model: nnx.Module, targets: Iterable[str]) -> list[tuple[nnx.Module, str, nnx.Module]]:
    found = []
    for target in targets:
        *parents, leaf = target.split(".")
        node = model
        for name in parents:
            node = getattr(node, name, None)
            if node is None:
                raise ValueError(f"LoRA target {target!r}: the model has no {name!r}; targets are paths such as {DEFAULT_TARGETS[0]!r}")
        child = getattr(node, leaf, None)
        if not isinstance(child, Dense | LoRADense):
            raise ValueError(f"LoRA target {target!r} is not a linear layer of the model (found {type(child).__name__})")
        found.append((node, leaf, child))
    return found


def inject_lora(model: nnx.Module, *, rank: int, alpha: float, targets: Sequence[str] = DEFAULT_TARGETS,
                rngs: nnx.Rngs) -> nnx.Module:
    """Wraps each target Dense in a LoRADense of `rank`, scale alpha / rank (in place)."""
    for parent, name, child in _modules_at(model, targets):
        if isinstance(child, LoRADense):
            raise ValueError(f"{name} already carries a LoRA adapter; merge_lora first to stack another")
        setattr(parent, name, LoRADense(child, rank, alpha / rank, rngs=rngs))
    return model


def lora_layers(model: nnx.Module) -> dict[str, LoRADense]:
    """{dotted path: LoRADense} of every adapter in the model."""
    return {".".join(str(p) for p in path): node for path, node in nnx.iter_graph(model) if isinstance(node, LoRADense)}


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Folds every adapter into its base kernel and removes the adapters (in place)."""
    for path, layer in lora_layers(model).items():
        *parents, leaf = path.split(".")
        parent = model
        for name in parents:
            parent = getattr(parent, name)
        kernel = layer.base.kernel
        kernel[...] = (kernel[...].astype(jnp.float32) + layer.delta()).astype(kernel[...].dtype)
        setattr(parent, leaf, layer.base)
    return model
