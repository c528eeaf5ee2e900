"""float8_e4m3fn weights with one scale per tensor, as the official `--use-fp8`
(hyvideo/modules/fp8_optimization.py): the quantiser, the dequantisation, and `Fp8Weight`, the
form a quantised parameter takes in a model's state (a pytree of the fp8 values and their
scales), turned back into the compute dtype one scanned layer at a time (nn/stack.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

FP8 = np.dtype(ml_dtypes.float8_e4m3fn)
# get_fp_maxval() (fp8_optimization.py:7-18) for E4M3: 1.75 * 2**8, float8_e4m3fn's largest value
E4M3_MAX = 448.0


def dequantize_fp8(weight, scale, dtype):
    """w8 * scale in `dtype`, for numpy or jax arrays (scale: an array or numpy scalar). Both
    factors are cast to the model dtype and the product is rounded once in it, as
    hyvideo/modules/fp8_optimization.py:50-53 (fp8_activation_dequant; the scale is cast at load,
    :99). Two bf16 factors multiply exactly in float32, so rounding that product to bf16 equals a
    native bf16 multiply."""
    return weight.astype(dtype) * scale.astype(dtype)


def fp8_scale(weights, stacked: int = 0):
    """The per-tensor scale max|w| / 448, jointly over `weights` (pieces of one upstream Linear,
    e.g. linear1's qkv and mlp rows), per index of the `stacked` leading axes (1: one scale per
    layer of a stack), in float32 as fp8_linear_forward computes it (fp8_optimization.py:60-61:
    the maximum in the weight dtype, exact, divided by get_fp_maxval()'s float32 tensor). numpy
    or jax arrays."""
    peaks = [abs(w).max(axis=tuple(range(stacked, w.ndim))) for w in weights]
    peak = peaks[0]
    for other in peaks[1:]:
        peak = _namespace(peak).maximum(peak, other)
    peak = peak.astype(np.float32)
    return peak / _divisor(peak, np.float32(E4M3_MAX))


def quantize_fp8(weight, scale):
    """w / scale rounded to float8_e4m3fn, `scale` (float32) broadcast over `weight`'s trailing
    axes.

    Equals fp8_tensor_quant + .to(float8_e4m3fn) (fp8_optimization.py:20-48, 62-63) bit for bit:
    the scale is unsqueezed to the weight's rank, so the division promotes to float32; the result
    is clamped to +-448, and quantize_to_fp8's round(x / 2**(floor(log2|x|) - 3)) * 2**(...) (the
    exponent floored at the subnormal one) rounds half to even onto the E4M3 grid, which is what
    the cast does. A zero scale (an all-zero tensor, which upstream leaves unquantised, :66)
    gives zeros."""
    xp = _namespace(weight)
    scale = scale.reshape(scale.shape + (1,) * (weight.ndim - scale.ndim))
    weight = weight.astype(np.float32)
    return (weight / _divisor(weight, xp.where(scale == 0, xp.ones_like(scale), scale))).clip(-E4M3_MAX, E4M3_MAX).astype(FP8)


def _divisor(x, d):
    """`d` broadcast to x's shape through x (x * 0 + d): a true division by it, as torch's. XLA
    rewrites x / broadcast(d) into x * (1 / d), off by an ulp, but keeps a divisor computed
    from data (it never folds a float x * 0)."""
    return x * 0 + d


def _namespace(x):
    return np if isinstance(x, np.ndarray | np.generic) else jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Fp8Weight:
    """A quantised parameter: `w8` (float8_e4m3fn, the parameter's shape) and `scale` (one per
    tensor: shape () for a single layer, (layers,) for a stacked one); `dtype` is the dtype the
    model computes it in. Sliced along the layer axis like any leaf (lax.scan does it)."""

    w8: jax.Array
    scale: jax.Array
    dtype: np.dtype = dataclasses.field(metadata=dict(static=True))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.w8.shape)

    def dequantize(self) -> jax.Array:
        return dequantize_fp8(self.w8, self.scale.reshape(self.scale.shape + (1,) * (self.w8.ndim - self.scale.ndim)), self.dtype)


def materialize(tree):
    """`tree` with every Fp8Weight dequantised to its dtype (other leaves unchanged)."""
    return jax.tree.map(lambda x: x.dequantize() if isinstance(x, Fp8Weight) else x, tree,
                        is_leaf=lambda x: isinstance(x, Fp8Weight))
