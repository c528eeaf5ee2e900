"""The DiT's weight modes (hyv_jax/loading/memory_modes.py): fp8 kernels give the output of the
model run on their dequantised weights, host offload gives the resident output bit for bit,
on one device and with fp8 + offload on an 8-device ring; what lives where."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from helpers import report

from configs import load_config
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import load_transformer
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.nn.fp8 import Fp8Weight, materialize
from hyv_jax.parallel.plan import ParallelPlan

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)
MODES = {"resident": MemoryMode(), "offload": MemoryMode(offload=True), "fp8": MemoryMode(fp8=True),
         "fp8+offload": MemoryMode(fp8=True, offload=True)}


def inputs(config, batch=1, grid=(3, 4, 6)):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((batch, *grid, config.in_channels)).astype(np.float32), np.full((batch,), 700.0),
            rng.standard_normal((batch, 8, config.text_states_dim)).astype(np.float32), np.array([[1] * 5 + [0] * 3] * batch),
            rng.standard_normal((batch, config.text_states_dim_2)).astype(np.float32), np.full((batch,), 6000.0))


def on_device(tree):
    """Every array moved to device memory (from host memory where offloaded)."""
    return jax.tree.map(lambda a: jax.device_put(a, a.sharding.with_memory_kind("device")), tree)


def forward(state, graphdef, args, parallel=None):
    return np.asarray(jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a, parallel=parallel))(state, *args))


@pytest.fixture(scope="module")
def outputs():
    """Forward outputs of the tiny model (float32) in each mode, with its state."""
    args = inputs(TINY)
    out = {}
    for name, mode in MODES.items():
        graphdef, state = nnx.split(load_transformer(TINY, seed=1, memory=mode))
        out[name] = (forward(state, graphdef, args), graphdef, state)
    return out


def test_offload_gives_the_resident_output_bit_for_bit(outputs):
    assert np.array_equal(outputs["offload"][0], outputs["resident"][0])
    assert np.array_equal(outputs["fp8+offload"][0], outputs["fp8"][0])


def test_fp8_equals_the_model_on_its_dequantised_weights(outputs):
    ours, graphdef, state = outputs["fp8"]
    reference = forward(materialize(state), graphdef, inputs(TINY))  # every Fp8Weight -> w8 * scale in the model dtype
    assert np.array_equal(ours, reference)
    report("fp8 tiny vs float32 weights (quantisation error, for scale)", ours, outputs["resident"][0])


def test_where_each_parameter_lives(outputs):
    state = outputs["fp8+offload"][2]
    placed = {}
    for path, var in nnx.to_flat_state(state):
        value = var.get_value()
        parts = [value.w8, value.scale] if isinstance(value, Fp8Weight) else [value]
        placed[tuple(str(p) for p in path)] = ({a.sharding.memory_kind for a in parts}, isinstance(value, Fp8Weight))
    in_blocks = {p: v for p, v in placed.items() if p[0] in ("double_blocks", "single_blocks")}
    assert set().union(*(kinds for kinds, _ in in_blocks.values())) == {"pinned_host"}
    assert set().union(*(kinds for p, (kinds, _) in placed.items() if p not in in_blocks)) == {"device"}
    # upstream's fp8 Linear weights: the block kernels, nothing outside the blocks, no bias or norm
    fp8 = {p for p, (_, quantised) in placed.items() if quantised}
    assert fp8 == {p for p in in_blocks if p[-1] == "kernel"}
    assert len(fp8) == 10 + 5  # double: img/txt x (mod, qkv, proj, fc1, fc2); single: linear1 x2, linear2 x2, modulation


def test_fused_upstream_linears_share_one_scale_per_layer(outputs):
    state = outputs["fp8"][2]
    single = state["single_blocks"]
    qkv, mlp = single["linear1_qkv"]["kernel"].get_value(), single["linear1_mlp"]["kernel"].get_value()
    assert isinstance(qkv, Fp8Weight) and qkv.scale.shape == (TINY.single_blocks,) and qkv.w8.dtype == ml_dtypes.float8_e4m3fn
    np.testing.assert_array_equal(qkv.scale, mlp.scale)
    # the scale is max|W| / 448 over the whole upstream linear1 = [qkv | mlp] of each layer
    resident = outputs["resident"][2]["single_blocks"]
    both = [np.abs(np.asarray(resident[n]["kernel"].get_value())).reshape(TINY.single_blocks, -1) for n in ("linear1_qkv", "linear1_mlp")]
    np.testing.assert_array_equal(np.asarray(qkv.scale), np.maximum(both[0].max(1), both[1].max(1)) / np.float32(448))


def test_bf16_fp8_model_matches_its_dequantised_weights():
    config = TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "dtype": "bfloat16", "param_dtype": "bfloat16"})
    graphdef, state = nnx.split(load_transformer(config, seed=1, memory=MemoryMode(fp8=True, offload=True)))
    args = inputs(config)
    ours = forward(state, graphdef, args)
    reference = forward(materialize(on_device(state)), graphdef, args)
    _, rel = report("bf16 fp8 + offload vs bf16 model on the dequantised weights", ours.astype(np.float32), reference.astype(np.float32))
    assert rel == 0.0


def test_fp8_offload_on_an_eight_device_ring_equals_one_device(outputs):
    config = TransformerConfig.from_mapping({**load_config("configs/tiny.py").transformer, "heads": 8, "rope_axes_dims": (2, 2, 4)})
    cfg = load_config("configs/tiny.py", ["parallel.mesh.context=8", "parallel.mesh.fsdp=1", "parallel.context_strategy=ring"])
    plan = ParallelPlan.from_config(cfg.parallel)
    args = inputs(config, batch=2, grid=(2, 8, 8))  # 32 image + 8 text tokens: 5 per device
    one = load_transformer(config, seed=3, memory=MemoryMode(fp8=True))
    ring = load_transformer(config, seed=3, memory=MemoryMode(fp8=True, offload=True), mesh=plan.mesh)
    assert {a.sharding.memory_kind for a in jax.tree.leaves(nnx.state(ring.single_blocks))} == {"pinned_host"}
    reference = forward(nnx.split(one)[1], nnx.graphdef(one), args)
    ours = forward(nnx.split(ring)[1], nnx.graphdef(ring), args, parallel=plan)
    _, rel = report("fp8 + offload, ring over 8 devices vs fp8 on one device", ours, reference)
    assert rel < 1e-5


def _scans(jaxpr):
    """Every scan equation of a jaxpr, nested ones included."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            yield eqn
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _scans(inner)


def test_offloaded_blocks_stream_one_layer_ahead():
    """With the blocks in host memory, each block scan carries the next layer's weights on the
    device (copied while the current layer computes), not only the activations."""
    graphdef, state = nnx.split(load_transformer(TINY, seed=1, memory=MODES["offload"]))
    jaxpr = jax.make_jaxpr(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, *inputs(TINY)).jaxpr
    layer_shapes = {stack: {tuple(a.shape[1:]) for a in jax.tree.leaves(nnx.state(getattr(nnx.merge(graphdef, state), stack)))}
                    for stack in ("double_blocks", "single_blocks")}
    carried = []
    for eqn in _scans(jaxpr):
        consts, count = eqn.params["num_consts"], eqn.params["num_carry"]
        carry = [v.aval for v in eqn.invars[consts:consts + count]]
        carried.append({tuple(a.shape) for a in carry if a.memory_space != jax.memory.Space.Host})
    for stack, shapes in layer_shapes.items():
        assert any(shapes <= c for c in carried), f"no scan carries one {stack} layer on the device"


@pytest.mark.parametrize("start, stop", [(0, None), (1, None), (1, 3), (0, 2)])
def test_a_streamed_stack_runs_any_layer_range_as_the_resident_one(start, stop):
    """The caches run part of a stack (scan_layers start/stop): streamed from host memory, the
    same layers run with the same weights."""
    from hyv_jax.nn.stack import scan_layers, stack_layers

    layers = stack_layers(lambda rngs: nnx.Linear(4, 4, rngs=rngs), 4, nnx.Rngs(0))
    graphdef, state = nnx.split(layers)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    host = jax.tree.map(lambda a: jax.device_put(a, device.with_memory_kind("pinned_host")), state)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8

    def run(s):
        return np.asarray(jax.jit(lambda s, x: scan_layers(nnx.merge(graphdef, s), x, lambda layer, h: jnp.tanh(layer(h)),
                                                           start=start, stop=stop))(s, x))

    assert np.array_equal(run(host), run(state))
    assert not np.array_equal(run(state), x)
