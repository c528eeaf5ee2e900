"""A corrupt or partial checkpoint is refused with a clear error naming the earlier steps, and
the previous checkpoint still restores."""

import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.training.checkpointing import CheckpointError, TrainCheckpoints, abstract_like


def _state(step):
    return {"params": {"w": jnp.arange(6.0).reshape(2, 3) + step}, "step": jnp.asarray(step, jnp.int32)}


def _write(directory, steps=(1, 2)):
    ckpt = TrainCheckpoints(directory, keep=3)
    for s in steps:
        ckpt.save(s, _state(s), {"next_index": 10 * s}, {"lora": False})
    ckpt.close()


@pytest.mark.parametrize("damage", ["truncated_arrays", "missing_item"])
def test_damaged_latest_is_refused_and_previous_restores(tmp_path, damage):
    _write(tmp_path)
    latest = tmp_path / "2"
    if damage == "truncated_arrays":
        for f in (latest / "state").rglob("*"):
            if f.is_file() and "ocdbt" in str(f.relative_to(latest)):
                f.write_bytes(f.read_bytes()[:7])
    else:  # an interrupted copy: the directory exists but its state item does not
        shutil.rmtree(latest / "state")
    ckpt = TrainCheckpoints(tmp_path)
    with pytest.raises(CheckpointError, match=r"step 2 .* corrupt or partial.*--resume_step=1") as err:
        ckpt.restore(abstract_like(_state(0)))
    print(err.value)
    state, data, meta = ckpt.restore(abstract_like(_state(0)), step=1)
    np.testing.assert_array_equal(state["params"]["w"], _state(1)["params"]["w"])
    assert data == {"next_index": 10} and meta == {"lora": False}


def test_unfinished_temporary_save_is_ignored(tmp_path):
    _write(tmp_path, steps=(1,))
    # what an async save killed mid-write leaves: orbax's temporary directory, never committed
    shutil.copytree(tmp_path / "1", tmp_path / "2.orbax-checkpoint-tmp-123")
    ckpt = TrainCheckpoints(tmp_path)
    assert ckpt.steps() == [1]
    state, _, _ = ckpt.restore(abstract_like(_state(0)))
    assert int(state["step"]) == 1


def test_resume_without_checkpoints_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        TrainCheckpoints(tmp_path).restore(abstract_like(_state(0)))
