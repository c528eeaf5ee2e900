"""The transformer's forward pass and parameter gradients on 8 simulated CPU devices, under
data/fsdp/context meshes and every context strategy, equal the single-device result (fp32,
random non-zero weights, text masks of different lengths)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import report

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.sharded_init import state_shardings

# 8 heads so Ulysses can split them 8 ways; 32 image + 8 text tokens: 40, a multiple of 8.
CONFIG = TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "heads": 8, "rope_axes_dims": (2, 2, 4)})
BATCH, TEXT_LENGTHS = 4, (8, 5, 3, 6)

MESHES = {
    "data2_context4_usp": {"mesh": {"data": 2, "context": 4}, "context_strategy": "usp", "ulysses_degree": 2},
    "fsdp8": {"mesh": {"fsdp": 8}},
    "context8_ulysses": {"mesh": {"context": 8}, "context_strategy": "ulysses"},
    "context8_ring": {"mesh": {"context": 8}, "context_strategy": "ring"},
    "data2_fsdp2_context2_ring": {"mesh": {"data": 2, "fsdp": 2, "context": 2}, "context_strategy": "ring"},
}


def random_model() -> HunyuanVideoTransformer:
    """Init values plus noise: no parameter stays zero (the zero-initialised final layer
    would make outputs and most gradients trivially equal)."""
    model = HunyuanVideoTransformer(CONFIG, rngs=nnx.Rngs(0))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(flat))
    for key, (_, var) in zip(keys, flat):
        var[...] = var[...] + 0.05 * jax.random.normal(key, var.shape, var.dtype)
    return model


def make_inputs():
    k = jax.random.split(jax.random.key(2), 6)
    c = CONFIG
    x = jax.random.normal(k[0], (BATCH, 2, 8, 8, c.in_channels))
    t = jnp.array([900.0, 500.0, 120.0, 40.0])
    text = jax.random.normal(k[1], (BATCH, max(TEXT_LENGTHS), c.text_states_dim))
    mask = jnp.arange(max(TEXT_LENGTHS))[None, :] < jnp.array(TEXT_LENGTHS)[:, None]
    pooled = jax.random.normal(k[2], (BATCH, c.text_states_dim_2))
    guidance = jnp.full((BATCH,), 6000.0)
    cotangent = jax.random.normal(k[3], x.shape[:-1] + (c.out_channels,))
    return (x, t, text, mask, pooled, guidance), cotangent


def forward_and_grads(model, inputs, cotangent, plan):
    """One compiled function: the output and d<output, cotangent>/d(parameters)."""
    graphdef, params = nnx.split(model, nnx.Param)

    @jax.jit
    def run(params, inputs):
        def loss(params):
            out = nnx.merge(graphdef, params)(*inputs, parallel=plan)
            return jnp.sum(out * cotangent), out

        (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return out, grads

    out, grads = run(params, inputs)
    return np.asarray(out), {p: np.asarray(g[...]) for p, g in nnx.to_flat_state(grads)}


@pytest.fixture(scope="module")
def setup():
    model, (inputs, cotangent) = random_model(), make_inputs()
    return model, inputs, cotangent, forward_and_grads(model, inputs, cotangent, None)


@pytest.mark.parametrize("name", list(MESHES))
def test_sharded_forward_and_grads_match_single_device(name, setup):
    model, inputs, cotangent, (ref_out, ref_grads) = setup
    plan = ParallelPlan.from_config(MESHES[name])
    graphdef, state = nnx.split(model)
    sharded = nnx.merge(graphdef, jax.device_put(state, state_shardings(model, plan.mesh)))
    out, grads = forward_and_grads(sharded, inputs, cotangent, plan)

    assert report(f"{name} forward", out, ref_out)[1] < 1e-5
    errors = {p: np.max(np.abs(g - ref_grads[p])) / np.max(np.abs(ref_grads[p])) for p, g in grads.items()}
    worst = max(errors, key=errors.get)
    report(f"{name} grads (worst: {'.'.join(map(str, worst))})", grads[worst], ref_grads[worst])
    assert errors[worst] < 1e-5, worst
    assert all(np.any(g) for g in ref_grads.values())  # every parameter's gradient is checked for real
