"""Which formulation a layer traces: the CPU's or the GPU/TPU's.

Some layers run faster on XLA:CPU in another form (nn/causal_conv.py, nn/upsampled_conv.py,
nn/group_norm.py); `per_backend` picks it when the program is lowered for the CPU, and
`accelerator_form()` makes a CPU host trace the accelerator's form instead, so a memory plan
compiled there holds the buffers the GPU/TPU would (hyv_jax/sampling/memory_plan.py).
"""

import contextlib
import contextvars
from collections.abc import Callable, Iterator

import jax

_ACCELERATOR_FORM = contextvars.ContextVar("accelerator_form", default=False)


@contextlib.contextmanager
def accelerator_form() -> Iterator[None]:
    """Programs traced inside use the GPU/TPU formulation on every backend."""
    token = _ACCELERATOR_FORM.set(True)
    try:
        yield
    finally:
        _ACCELERATOR_FORM.reset(token)


def per_backend(*operands: jax.Array, cpu: Callable, default: Callable) -> jax.Array:
    """`cpu`(*operands) in programs lowered for the CPU, `default`(*operands) for GPU and TPU
    and inside accelerator_form()."""
    if _ACCELERATOR_FORM.get():
        return default(*operands)
    return jax.lax.platform_dependent(*operands, cpu=cpu, default=default)
