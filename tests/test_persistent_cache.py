"""hyv_jax/persistent_cache.py: programs and values a later process loads instead of tracing,
lowering or building them again; keyed by everything that decides them, so another config,
switch or argument signature never loads the wrong entry."""

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.nn.causal_conv import CPU_COMPILER_OPTIONS
from hyv_jax.nn.mlp import gelu
from hyv_jax.nn.params import abstract_module
from hyv_jax.persistent_cache import PersistentProgram, key_bytes

ROOT = Path(__file__).parents[1]

# a program with fusions (XLA:CPU compiles each to a kernel of its own), a static config and a
# trace-time switch; prints its traces and result
PROGRAM = textwrap.dedent("""
    import contextvars, dataclasses, functools, os, sys
    import jax, jax.numpy as jnp, numpy as np
    from hyv_jax.persistent_cache import PersistentProgram

    SWITCH = contextvars.ContextVar("test_switch", default=False)
    traces = 0

    @dataclasses.dataclass(frozen=True)
    class Config:
        layers: int

    def net(config, x, w):
        global traces
        traces += 1
        for _ in range(config.layers):
            x = jax.nn.silu(x @ w) + jnp.where(x > 0, x, 0.1 * x)
        return (x * (2.0 if SWITCH.get() else 1.0)).sum(axis=0), jnp.isfinite(x).all()

    NET = PersistentProgram(net, "test_net", static_argnums=(0,))

    if __name__ == "__main__":
        cache, layers, switch, size = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "on", int(sys.argv[4])
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        x = np.linspace(-1, 1, size * 16, dtype=np.float32).reshape(size, 16)
        w = np.linspace(-0.5, 0.5, 256, dtype=np.float32).reshape(16, 16)
        SWITCH.set(switch)
        if os.environ.get("TEST_BOUND"):  # the config held by the function, as a denoising step holds its graph
            y, finite = PersistentProgram(functools.partial(net, Config(layers)), "test_net", bound=(Config(layers),))(x, w)
        else:
            y, finite = NET(Config(layers), x, w)
        np.save(sys.argv[5], np.asarray(y))
        print("traces", traces)
""")


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "program.py"
    path.write_text(PROGRAM)
    cache = tmp_path / "cache"

    def run(layers=3, switch="off", size=8, env=None):
        out = tmp_path / f"y{len(list(tmp_path.glob('y*.npy')))}.npy"
        result = subprocess.run([sys.executable, str(path), str(cache), str(layers), switch, str(size), str(out)],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                                capture_output=True, text=True, timeout=300, check=False)
        assert result.returncode == 0, result.stderr
        return int(result.stdout.split()[-1]), np.load(out), result.stderr

    return run, cache / "hyv_jax"


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.bin")) if folder.exists() else []


def test_a_later_process_loads_the_program_untraced_and_gets_the_same_result(program):
    run, folder = program
    traces, first, _ = run()
    assert traces == 1 and len(entries(folder)) == 1
    traces, again, _ = run()
    assert traces == 0  # loaded: neither traced nor lowered
    np.testing.assert_array_equal(again, first)
    assert len(entries(folder)) == 1


def test_bound_values_key_the_program_like_static_arguments(program):
    run, folder = program
    bound = {"TEST_BOUND": "1"}
    traces, first, _ = run(env=bound)
    assert traces == 1
    traces, again, _ = run(env=bound)
    assert traces == 0
    np.testing.assert_array_equal(again, first)
    traces, other, _ = run(layers=2, env=bound)
    assert traces == 1 and not np.array_equal(other, first) and len(entries(folder)) == 2


def test_another_static_argument_switch_or_shape_is_another_entry(program):
    run, folder = program
    _, base, _ = run()
    for kwargs in ({"layers": 2}, {"switch": "on"}, {"size": 4}):
        traces, y, _ = run(**kwargs)
        assert traces == 1, kwargs  # never the entry of the base program
        assert not np.array_equal(y, base) or kwargs == {"size": 4}
    assert len(entries(folder)) == 4
    _, switched, _ = run(switch="on")
    np.testing.assert_array_equal(switched, 2 * base)
    traces, _, _ = run(env={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_fast_math=false"})
    assert traces == 1  # XLA flags key too


def test_entries_are_compiled_afresh_even_when_jax_cache_holds_the_program(program):
    """An executable JAX loaded from its cache serializes without its kernels' code on XLA:CPU
    ('Function ... not found' when the entry runs)."""
    run, folder = program
    _, first, _ = run()
    for entry in folder.glob("*.bin"):  # JAX's own cache keeps whatever it holds
        entry.unlink()
    run()  # writes the entry again
    traces, again, _ = run()
    assert traces == 0
    np.testing.assert_array_equal(again, first)


def test_a_damaged_entry_is_compiled_again_with_a_warning(program):
    run, folder = program
    _, first, _ = run()
    (entry,) = folder.glob("*.bin")
    entry.write_bytes(entry.read_bytes()[:100])
    traces, again, err = run()
    assert traces == 1 and "computing the compiled test_net again: cannot load" in err
    np.testing.assert_array_equal(again, first)
    traces, _, _ = run()
    assert traces == 0  # written again whole


def test_without_the_compilation_cache_nothing_is_kept(program, tmp_path):
    run, folder = program
    script = (tmp_path / "program.py").read_text().replace('jax.config.update("jax_compilation_cache_dir", cache)', "")
    (tmp_path / "program.py").write_text(script)
    traces, _, _ = run()
    assert traces == 1 and not folder.exists()


def test_a_model_graph_keys_the_same_built_or_unpickled():
    """Keys are pickled without the memo: a pickled and unpickled graph shares other objects
    than the built one, which gave the tiny default's programs new keys on every second run."""
    config = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_groups=4, latent_channels=4, spatial_ratio=2,
                       temporal_ratio=2)
    graphdef, _ = nnx.split(abstract_module(lambda rngs: CausalVideoVAE(config, rngs=rngs)))
    assert key_bytes((graphdef,)) == key_bytes((pickle.loads(pickle.dumps(graphdef)),))


def test_lambdas_and_local_functions_make_a_key_impossible():
    def local(x):
        return x

    assert key_bytes((lambda x: x,)) is None and key_bytes((local,)) is None
    assert key_bytes((np.float32, gelu, "silu", 3)) is not None  # module-level functions key by their names


def test_meshes_key_by_their_devices_and_axes():
    devices = np.array(jax.devices()[:4])
    mesh = Mesh(devices.reshape(2, 2), ("data", "context"))
    assert key_bytes((mesh,)) is not None and key_bytes((mesh,)) == key_bytes((Mesh(devices.reshape(2, 2), ("data", "context")),))
    assert key_bytes((mesh,)) != key_bytes((Mesh(devices[::-1].reshape(2, 2), ("data", "context")),))
    assert key_bytes((mesh,)) != key_bytes((Mesh(devices.reshape(2, 2), ("data", "fsdp")),))


def test_a_write_clears_the_entries_of_other_sources_only(program):
    run, folder = program
    run()
    (kept,) = folder.glob("*.bin")
    name, _, key = kept.name.rsplit("-", 2)
    stale = folder / f"{name}-{'0' * 12}-{key}"
    stale.write_bytes(b"an entry of other hyv_jax sources")
    foreign = folder / "notes.txt"
    foreign.write_text("not an entry")
    traces, _, _ = run(layers=2)  # a new entry is written
    assert traces == 1 and not stale.exists() and kept.exists() and foreign.exists()


def test_compiler_options_reach_every_compile_and_an_unknown_one_falls_back(monkeypatch):
    """Also without a cache folder (the suite's case): the VAE's tiles compile with YNNPACK's
    convolutions on CPU."""
    seen = []
    compile_ = jax.stages.Lowered.compile

    def spy(self, compiler_options=None, **kwargs):
        seen.append(compiler_options)
        return compile_(self, compiler_options=compiler_options, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    config = VAEConfig(block_out_channels=(8, 16), layers_per_block=1, norm_groups=4, latent_channels=4, spatial_ratio=2,
                       temporal_ratio=2, dtype="float32", param_dtype="float32")
    vae = CausalVideoVAE(config, rngs=nnx.Rngs(0))
    latent = np.linspace(-1, 1, 2 * 3 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 3, 4)
    decoded = vae.decode(latent)
    assert seen == [CPU_COMPILER_OPTIONS]
    np.testing.assert_allclose(decoded, jax.jit(lambda z: vae.decode_frames(z))(latent), rtol=0, atol=1e-5)

    program = PersistentProgram(lambda x: x * 2, "test_options", compiler_options={"cpu": {"xla_cpu_no_such_option": "1"}})
    with pytest.warns(UserWarning, match="compiling test_options without .*xla_cpu_no_such_option"):
        np.testing.assert_array_equal(program(np.arange(3.0, dtype=np.float32)), [0, 2, 4])
    assert seen[-2:] == [{"xla_cpu_no_such_option": "1"}, None]
    elsewhere = PersistentProgram(lambda x: x * 2, "test_options", compiler_options={"gpu": {"xla_gpu_no_such_option": "1"}})
    elsewhere(np.arange(3.0, dtype=np.float32))  # arguments on the CPU: no GPU option is passed
    assert len(seen) == 3
