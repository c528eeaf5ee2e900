"""The one attention entry point of the library; kernels plug in behind `impl`.

impl:
  "xla"     plain XLA, any backend (the reference the kernels are tested against).
  "cudnn"   cuDNN flash attention through jax.nn.dot_product_attention (GPU; bf16/fp16).
  "pallas"  our Pallas flash kernel of the platform: Triton on GPU, Mosaic on TPU.
  "splash"  JAX's TPU splash attention (TPU).
  "auto"    the fastest available: cudnn on GPU (pallas where cuDNN cannot take the dtype or
            head dim), splash on TPU, xla elsewhere.
  "pallas_gpu_interpret", "pallas_tpu_interpret", "splash_interpret": a kernel run by the
            Pallas interpreter on any backend, slowly (tests of the model on CPU).
A key mask (kv_mask, the token refiner's) is only understood by XLA attention: any impl then
runs "xla" for that call; the valid key length (kv_lengths) is understood by all.
attention_with_lse(...) also returns the log-sum-exp, for ring attention's merges.
"""

import importlib

import jax
import jax.numpy as jnp

from hyv_jax.attention.flash import valid_lengths
from hyv_jax.attention.xla import xla_attention, xla_attention_with_lse


def _kernel(module: str, name: str, **options):
    """`name` of hyv_jax.attention.<module>, imported when first called: importing Pallas's
    Triton and Mosaic lowerings takes ~0.2 s, which every CPU run would pay for kernels it never runs."""

    def call(*args):
        return getattr(importlib.import_module(f"hyv_jax.attention.{module}"), name)(*args, **options)

    return call


splash_attention = _kernel("splash", "splash_attention")


def _key_mask(k, kv_lengths, key_mask=None):
    if kv_lengths is not None:
        length_mask = jnp.arange(k.shape[1])[None, :] < kv_lengths[:, None]
        key_mask = length_mask if key_mask is None else key_mask & length_mask
    return key_mask


def _xla(q, k, v, kv_lengths, key_mask=None):
    return xla_attention(q, k, v, _key_mask(k, kv_lengths, key_mask))


def _require(backend: str, impl: str) -> None:
    if jax.default_backend() != backend:
        raise ValueError(f"impl={impl!r} needs a {backend.upper()} backend, this one is {jax.default_backend()!r}: "
                         "use impl='auto' (picks what the platform has) or 'xla'")


def _cudnn(q, k, v, kv_lengths):
    _require("gpu", "cudnn")
    if q.dtype not in (jnp.bfloat16, jnp.float16):
        raise ValueError(f"impl='cudnn' takes bf16 or fp16 inputs, got {q.dtype}: cast them or use impl='pallas'")
    lengths = None if kv_lengths is None else valid_lengths(kv_lengths, q.shape[0], k.shape[1])
    return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=lengths, implementation="cudnn")


def _pallas_with_lse(q, k, v, kv_lengths):
    backend = jax.default_backend()
    if backend in ("gpu", "tpu"):
        return _kernel(f"pallas_{backend}", "flash_attention_with_lse")(q, k, v, kv_lengths)
    raise ValueError(f"impl='pallas' has kernels for GPU and TPU, this backend is {backend!r}: use impl='xla' "
                     "(or 'pallas_gpu_interpret' / 'pallas_tpu_interpret' to run a kernel interpreted, slowly)")


def _pallas(q, k, v, kv_lengths):
    return _pallas_with_lse(q, k, v, kv_lengths)[0]


def _cudnn_takes(q) -> bool:
    dim = q.shape[-1]
    return q.dtype in (jnp.bfloat16, jnp.float16) and dim % 8 == 0 and dim <= 256


def _auto(q, k, v, kv_lengths):
    backend = jax.default_backend()
    if backend == "gpu":
        return (_cudnn if _cudnn_takes(q) else _pallas)(q, k, v, kv_lengths)
    if backend == "tpu":
        return splash_attention(q, k, v, kv_lengths)
    return _xla(q, k, v, kv_lengths)


IMPLEMENTATIONS = {
    "xla": _xla,
    "cudnn": _cudnn,
    "pallas": _pallas,
    "splash": splash_attention,
    "auto": _auto,
    "pallas_gpu_interpret": _kernel("pallas_gpu", "flash_attention", interpret=True),
    "pallas_tpu_interpret": _kernel("pallas_tpu", "flash_attention", interpret=True),
    "splash_interpret": _kernel("splash", "splash_attention", interpret=True),
}


def _check_impl(impl, table):
    if impl not in table:
        raise ValueError(f"unknown attention impl {impl!r}; choose one of {sorted(table)}")


def _check(q, k, v, impl, table):
    _check_impl(impl, table)
    if q.shape[-1] != k.shape[-1] or k.shape != v.shape:
        raise ValueError(f"attention shapes do not match: q {q.shape}, k {k.shape}, v {v.shape}")


def attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    kv_lengths: jax.Array | None = None,
    kv_mask: jax.Array | None = None,
    impl: str = "xla",
) -> jax.Array:
    """Non-causal multi-head attention, layout (B, L, heads, head_dim), scale 1/sqrt(head_dim).

    kv_lengths (B,) int: only the first kv_lengths[b] keys of sample b are attended to (the
    joint image+text sequence with right-padded text). kv_mask (B, Lk) bool: an arbitrary key
    mask (the token refiner's positional text mask); it sends the call to XLA attention. Both
    may be given. A query with no valid key gets zeros (splash and cudnn: undefined).
    """
    _check(q, k, v, impl, IMPLEMENTATIONS)
    if kv_mask is not None:
        return _xla(q, k, v, kv_lengths, kv_mask)
    return IMPLEMENTATIONS[impl](q, k, v, kv_lengths)


def _xla_with_lse(q, k, v, kv_lengths):
    return xla_attention_with_lse(q, k, v, _key_mask(k, kv_lengths))


def _auto_lse_impl() -> str:
    return "pallas" if jax.default_backend() in ("gpu", "tpu") else "xla"


def _auto_with_lse(q, k, v, kv_lengths):
    return WITH_LSE[_auto_lse_impl()](q, k, v, kv_lengths)


WITH_LSE = {
    "xla": _xla_with_lse,
    "pallas": _pallas_with_lse,
    "auto": _auto_with_lse,
    "pallas_gpu_interpret": _kernel("pallas_gpu", "flash_attention_with_lse", interpret=True),
    "pallas_tpu_interpret": _kernel("pallas_tpu", "flash_attention_with_lse", interpret=True),
}


def attention_with_lse(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    kv_lengths: jax.Array | None = None,
    impl: str = "xla",
) -> tuple[jax.Array, jax.Array]:
    """attention(...) that also returns the log-sum-exp of each query's scaled scores, for merging
    partial results over disjoint key sets (ring attention): (out (B, Lq, H, D), lse (B, Lq, H)
    float32; flash.EMPTY_LSE, a finite -1e30, for a query without valid keys). Differentiable
    through both. impl: "xla", "pallas" (GPU/TPU kernel), "auto" (pallas on GPU/TPU, else xla),
    or a "*_interpret" kernel; cuDNN and splash expose no differentiable lse.
    """
    _check(q, k, v, impl, WITH_LSE)
    return WITH_LSE[impl](q, k, v, kv_lengths)


def lse_impl_streams_keys(impl: str) -> bool:
    """Whether attention_with_lse(..., impl=impl) runs a flash kernel, which streams the keys in
    blocks, rather than XLA attention, which materialises all (Lq, Lk) logits at once."""
    _check_impl(impl, WITH_LSE)
    return (_auto_lse_impl() if impl == "auto" else impl) != "xla"
