"""The tiny transformer with a Pallas kernel (interpreted) equals it with XLA attention: forward
and the gradient in the latents, through the scanned blocks with their padded text."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from helpers import report

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)


def _forward_and_grad(model, x, text, text_mask, pooled):
    graphdef, state = nnx.split(model)
    t, guidance = jnp.full((x.shape[0],), 500.0), jnp.full((x.shape[0],), 6000.0)

    @jax.jit
    def run(state, x):
        out, vjp = jax.vjp(lambda x: nnx.merge(graphdef, state)(x, t, text, text_mask, pooled, guidance), x)
        return out, vjp(jnp.cos(out))[0]

    return run(state, x)


def test_pallas_gpu_kernel_in_the_transformer():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 2, 4, 6, TINY.in_channels)), jnp.float32)
    text = jnp.asarray(rng.standard_normal((2, 8, TINY.text_states_dim)), jnp.float32)
    text_mask = jnp.asarray([[1] * 8, [1] * 3 + [0] * 5], jnp.int32)
    pooled = jnp.asarray(rng.standard_normal((2, TINY.text_states_dim_2)), jnp.float32)
    model = HunyuanVideoTransformer(TINY, rngs=nnx.Rngs(0))
    # Random non-zero weights everywhere: zero-initialised layers would hide the attention.
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    nnx.update(model, jax.tree.unflatten(treedef, [0.3 * jax.random.normal(k, p.shape, p.dtype)
                                                   for k, p in zip(keys, leaves)]))
    ref_out, ref_grad = _forward_and_grad(model, x, text, text_mask, pooled)
    # The impl is static model configuration: the same weights, another graph.
    model.config = dataclasses.replace(TINY, attention_impl="pallas_gpu_interpret")
    out, grad = _forward_and_grad(model, x, text, text_mask, pooled)
    assert float(jnp.max(jnp.abs(ref_grad))) > 0
    for name, ours, ref in (("transformer out", out, ref_out), ("d latents", grad, ref_grad)):
        _, rel = report(f"pallas_gpu_interpret {name}", ours, ref)
        assert rel < 1e-5, f"{name}: relative error {rel:.2e}"
