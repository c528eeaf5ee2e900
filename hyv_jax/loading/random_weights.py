"""Random non-zero weights for the tiny configs, drawn as the fixtures' official-code weights
were: in PyTorch naming, walked in order, in numpy. Nothing is zero, so every path of the model
matters; the same seed gives the same model on every process and device layout.

For the real sizes (benchmarks of speed and memory), `device_random_state` draws on the devices
instead, one parameter at a time straight into its sharding: numpy would take minutes and the
host memory of the whole model in float32."""

from collections.abc import Callable, Mapping

import jax
import numpy as np
from flax import nnx

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.model_state import param_shapes


def random_torch_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Matrices and kernels N(0, 1/fan_in) with fan_in = prod(shape[1:]), biases N(0, 0.1^2),
    other vectors 1 + N(0, 0.1^2)."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        draw = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) >= 2:
            values[name] = draw / np.float32(np.sqrt(np.prod(shape[1:])))
        else:
            values[name] = np.float32(0.1) * draw + np.float32(0.0 if name.endswith("bias") else 1.0)
    return values


def random_params(abstract: nnx.Module, export: Callable, read: Callable, param_dtype: str, seed: int) -> dict:
    """Flat numpy parameters for the abstract model: through the PyTorch layout (`export` maps
    our flat parameters to PyTorch names, `read` back), where fan-in is unambiguous. In numpy:
    a jitted or eager flax init of even the tiny models takes tens of seconds on a CPU."""
    zeros = {p: np.zeros(s, np.float32) for p, s in param_shapes(abstract).items()}
    torch_shapes = {name: v.shape for name, v in export(zeros).items()}
    return read(from_arrays(random_torch_values(torch_shapes, seed)), np.dtype(param_dtype))


def device_random_state(abstract: nnx.Module, shardings: Mapping, seed: int) -> nnx.State:
    """The abstract model's state with random parameters drawn on the devices into `shardings`
    (path -> sharding, any memory kind): N(0, 0.02^2) for kernels and biases, 1 + N(0, 0.02^2)
    for norm scales (the parameters named `weight`)."""
    _, state = nnx.split(abstract)
    key = jax.random.key(seed)
    for i, (path, var) in enumerate(nnx.to_flat_state(state)):
        path = tuple(str(p) for p in path)
        shape, dtype = var.get_value().shape, var.get_value().dtype
        offset = 1.0 if path[-1] == "weight" else 0.0

        def draw(k, shape=shape, dtype=dtype, offset=offset):
            return (offset + 0.02 * jax.random.normal(k, shape, np.float32)).astype(dtype)

        var.set_value(jax.jit(draw, out_shardings=shardings[path])(jax.random.fold_in(key, i)))
    return state
