"""Two-layer perceptrons: the blocks' MLP and the conditioning embedders."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from hyv_jax.nn.dense import Dense
from hyv_jax.nn.remat import MLP_HIDDEN


def gelu(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


def silu(x: jax.Array) -> jax.Array:
    return jax.nn.silu(x)  # jax.nn.silu itself is a jitted wrapper that pickle cannot name


def silu_fp32(x: jax.Array) -> jax.Array:
    """SiLU in float32 whatever the compute dtype (Hunyuan-DiT's FP32_SiLU)."""
    return jax.nn.silu(x.astype(jnp.float32)).astype(x.dtype)


def quick_gelu(x: jax.Array) -> jax.Array:
    """CLIP's GELU approximation."""
    return x * jax.nn.sigmoid(1.702 * x)


# named functions, not lambdas: a module's graph holding one can key programs across processes
# (hyv_jax.persistent_cache.py)
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": gelu, "gelu_tanh": gelu_tanh, "silu": silu, "silu_fp32": silu_fp32, "quick_gelu": quick_gelu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLP(nnx.Module):
    """fc1 -> activation -> fc2 (hidden width on the `mlp` axis). The output width is the
    input's unless `out_dim` is given (projections between widths, e.g. text states into the
    model width); `in_axis` / `out_axis` name the outer widths."""

    def __init__(self, dim: int, hidden: int, act: str, *, out_dim: int | None = None, in_axis: str = "embed",
                 out_axis: str = "embed", dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.act = activation(act)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = Dense(dim, hidden, in_axes=(in_axis,), out_axes=("mlp",), **kw)
        self.fc2 = Dense(hidden, dim if out_dim is None else out_dim, in_axes=("mlp",), out_axes=(out_axis,), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(checkpoint_name(self.act(self.fc1(x)), MLP_HIDDEN))


class MLPEmbedder(nnx.Module):
    """in_layer -> SiLU -> out_layer: projects a conditioning vector (timestep features, pooled
    text) into the model width. Upstream names it mlp.0/mlp.2, in_layer/out_layer or
    linear_1/linear_2 depending on the embedder; the converter's table maps those names."""

    def __init__(self, in_dim: int, dim: int, *, in_axis: str, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_layer = Dense(in_dim, dim, in_axes=(in_axis,), out_axes=("embed",), **kw)
        self.out_layer = Dense(dim, dim, in_axes=("embed",), out_axes=("embed",), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out_layer(jax.nn.silu(self.in_layer(x)))


class GatedMLP(nnx.Module):
    """down(act(gate(x)) * up(x)), no biases: Llama's SwiGLU (silu), T5's gated GELU (gelu_tanh)."""

    def __init__(self, dim: int, hidden: int, act: str, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.act = activation(act)
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Dense(dim, hidden, in_axes=("embed",), out_axes=("mlp",), **kw)
        self.up_proj = Dense(dim, hidden, in_axes=("embed",), out_axes=("mlp",), **kw)
        self.down_proj = Dense(hidden, dim, in_axes=("mlp",), out_axes=("embed",), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))
