"""orbax_io.restore_params reads a small checkpoint into host memory in one call and places it
in one batch (the tiny default's models load in a fraction of Orbax's per-array time), a large
one array by array onto its shardings: both give the same arrays, dtypes, shardings and
messages."""

import shutil

import jax
import ml_dtypes
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyv_jax.convert import orbax_io

rng = np.random.default_rng(0)
FLAT = {
    ("blocks", "kernel"): rng.standard_normal((8, 6)).astype(np.float32),
    ("blocks", "bias"): rng.standard_normal(6).astype(np.float32),
    ("embed",): rng.standard_normal((4, 8)).astype(np.float16),
    ("w8",): rng.standard_normal((8, 8)).astype(ml_dtypes.float8_e4m3fn),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "model"
    orbax_io.save_params(folder, FLAT, {"model": "test"})
    return folder


@pytest.fixture(params=["small", "large"])
def path(request, monkeypatch):
    """Which restore runs: the checkpoint is below the limit, or the limit is 0."""
    if request.param == "large":
        monkeypatch.setattr(orbax_io, "SMALL_CHECKPOINT_BYTES", 0)
    return request.param


def test_both_paths_give_the_same_arrays_cast_as_asked_on_their_shardings(checkpoint, path):
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("a", "b"))
    shardings = {("blocks", "kernel"): NamedSharding(mesh, PartitionSpec("a", "b")),
                 ("embed",): NamedSharding(mesh, PartitionSpec(None, "a"))}
    dtypes = {("blocks", "kernel"): ml_dtypes.bfloat16, ("blocks", "bias"): np.float32, ("embed",): np.float32,
              ("w8",): ml_dtypes.float8_e4m3fn}
    restored = orbax_io.restore_params(checkpoint, {p: a.shape for p, a in FLAT.items()}, dtypes, shardings)
    for p, array in restored.items():
        assert array.dtype == dtypes[p], p
        np.testing.assert_array_equal(np.asarray(array), FLAT[p].astype(dtypes[p]))
        assert array.sharding == shardings.get(p, jax.sharding.SingleDeviceSharding(jax.devices()[0])), p


def test_both_paths_name_what_does_not_fit(checkpoint, path):
    shapes = {p: a.shape for p, a in FLAT.items() if p != ("w8",)}
    shapes[("blocks", "kernel")] = (8, 7)
    shapes[("extra",)] = (3,)
    with pytest.raises(ValueError) as error:
        orbax_io.restore_params(checkpoint, shapes, {p: np.float32 for p in shapes}, hint="; check the config")
    message = str(error.value)
    assert "blocks/kernel is (8, 6) in the checkpoint, (8, 7) in the model" in message
    assert "extra is missing from the checkpoint" in message and "w8 is in the checkpoint but not in the model" in message
    assert message.endswith("; check the config")


def test_both_paths_say_to_convert_again_when_the_parameters_are_damaged(checkpoint, path, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(checkpoint, damaged)
    for f in (damaged / "params").rglob("*"):
        if f.is_file() and f.name != "_CHECKPOINT_METADATA":
            f.write_bytes(b"\0" * 7)
    with pytest.raises(ValueError, match="cannot read the parameters in .*; convert the checkpoint again"):
        orbax_io.restore_params(damaged, {p: a.shape for p, a in FLAT.items()}, {p: a.dtype for p, a in FLAT.items()})
