"""A linear layer over several input and output dimensions.

The kernel is stored as (*in_shape, *out_shape), so a fused projection keeps its structure:
a qkv projection is (embed, 3, heads, head_dim) and shards over heads; an output projection is
(heads, head_dim, embed). PyTorch's flat (out, in) matrix is a reshape and transpose of it.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.nn.params import fan_in_normal, make_param, zeros


class Dense(nnx.Module):
    def __init__(
        self,
        in_shape: int | Sequence[int],
        out_shape: int | Sequence[int],
        *,
        in_axes: Sequence[str | None],
        out_axes: Sequence[str | None],
        use_bias: bool = True,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_shape = (in_shape,) if isinstance(in_shape, int) else tuple(in_shape)
        self.out_shape = (out_shape,) if isinstance(out_shape, int) else tuple(out_shape)
        self.dtype = dtype
        self.kernel = make_param(
            rngs,
            fan_in_normal(len(self.in_shape)),
            self.in_shape + self.out_shape,
            tuple(in_axes) + tuple(out_axes),
            param_dtype,
        )
        self.bias = make_param(rngs, zeros, self.out_shape, out_axes, param_dtype) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        n_in = len(self.in_shape)
        if x.shape[x.ndim - n_in :] != self.in_shape:
            raise ValueError(f"Dense expects inputs ending in {self.in_shape}, got shape {x.shape}")
        batch_dims = x.ndim - n_in
        y = jax.lax.dot_general(
            x.astype(self.dtype),
            self.kernel[...].astype(self.dtype),
            ((tuple(range(batch_dims, x.ndim)), tuple(range(n_in))), ((), ())),
            preferred_element_type=jnp.float32,
        )
        if self.bias is not None:
            y = y + self.bias[...].astype(jnp.float32)
        return y.astype(self.dtype)
