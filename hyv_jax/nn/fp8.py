"""float8_e4m3fn weights with one scale per tensor, as the official `--use-fp8`."""


def dequantize_fp8(weight, scale, dtype):
    """w8 * scale in `dtype`, for numpy or jax arrays (scale: an array or numpy scalar). Both
    factors are cast to the model dtype and the product is rounded once in it, as
    hyvideo/modules/fp8_optimization.py:50-53 (fp8_activation_dequant; the scale is cast at load,
    :99). Two bf16 factors multiply exactly in float32, so rounding that product to bf16 equals a
    native bf16 multiply."""
    return weight.astype(dtype) * scale.astype(dtype)
