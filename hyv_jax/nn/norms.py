"""LayerNorm and RMSNorm, computed in float32 and cast back to the compute dtype."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import make_param, ones, zeros


class LayerNorm(nnx.Module):
    def __init__(
        self,
        dim: int,
        *,
        eps: float = 1e-6,
        affine: bool = True,
        axis_name: str = "norm",
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.eps = eps
        self.weight = make_param(rngs, ones, (dim,), (axis_name,), param_dtype) if affine else None
        self.bias = make_param(rngs, zeros, (dim,), (axis_name,), param_dtype) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return y.astype(x.dtype)


class RMSNorm(nnx.Module):
    """x * rsqrt(mean(x^2) + eps), cast back to x's dtype, then times the weight (as upstream)."""

    def __init__(self, dim: int, *, eps: float = 1e-6, axis_name: str = "norm", param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.eps = eps
        self.weight = make_param(rngs, ones, (dim,), (axis_name,), param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = (x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)).astype(x.dtype)
        return y * self.weight[...].astype(x.dtype)
