"""Checkpoints refuse clearly and lose nothing: a damaged one names the earlier steps and the
previous one still restores; one of another model config or training kind says so (it is not
called damaged); resuming below the newest moves the later ones aside so new saves replace them;
a save that cannot fit or fails ends in one line."""

import shutil
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from hyv_jax.training.checkpointing import SUPERSEDED, CheckpointError, TrainCheckpoints, abstract_like
from hyv_jax.training.loop import resume


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
    with pytest.raises(CheckpointError, match=r"step 2 .* damaged or incomplete.*--resume_step=1") as err:
        ckpt.restore(abstract_like(_state(0)))
    print(err.value)
    state, data, meta = ckpt.restore(abstract_like(_state(0)), step=1)
    np.testing.assert_array_equal(state["params"]["w"], _state(1)["params"]["w"])
    assert data == {"next_index": 10} and meta["lora"] is False


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


def test_another_config_or_training_kind_is_not_called_damaged(tmp_path):
    _write(tmp_path, steps=(1,))
    ckpt = TrainCheckpoints(tmp_path)
    wider = {"params": {"w": jnp.zeros((2, 4))}, "step": jnp.asarray(0, jnp.int32)}
    with pytest.raises(CheckpointError, match=r"step 1 .* was written with another model config \(\['params'\]\['w'\]: "
                                               r"\(2, 3\) in the checkpoint, \(2, 4\) now\): resume with the config") as err:
        ckpt.restore(abstract_like(wider))
    assert "damaged" not in str(err.value) and "delete" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"holds full training \(training.lora.enabled=False\), not LoRA adapters"):
        ckpt.restore(abstract_like(_state(0)), lora=True)  # e.g. export-lora of a full run
    state, _, _ = ckpt.restore(abstract_like(_state(0)), lora=False)
    np.testing.assert_array_equal(state["params"]["w"], _state(1)["params"]["w"])


class _Trainer:  # what loop.resume uses of a Trainer
    lora = False

    def __init__(self):
        self.state = _state(0)

    @property
    def step_count(self):
        return int(self.state["step"])


class _Batches:
    def set_state(self, state):
        self.state = state


def test_resuming_below_a_damaged_newest_moves_it_aside_and_saves_replace_it(tmp_path):
    _write(tmp_path, steps=(1, 2, 3))
    for f in (tmp_path / "3" / "state").rglob("*"):
        if f.is_file() and "ocdbt" in str(f.relative_to(tmp_path / "3")):
            f.write_bytes(f.read_bytes()[:7])
    ckpt = TrainCheckpoints(tmp_path, keep=3)
    trainer, batches = _Trainer(), _Batches()
    resumed = resume(trainer, ckpt, batches, step=2)
    assert (resumed.step, batches.state) == (2, {"next_index": 20})
    assert resumed.set_aside.parent == tmp_path / SUPERSEDED and (resumed.set_aside / "3").is_dir()  # kept, not deleted
    for s in (3, 4):  # the resumed run's saves; rotation keeps 3 of them
        ckpt.save(s, _state(s), {"next_index": 10 * s}, {"lora": False})
    ckpt.wait()
    assert ckpt.steps() == [2, 3, 4]
    for s in (2, 3, 4):
        state, data, _ = ckpt.restore(abstract_like(_state(0)), step=s)
        np.testing.assert_array_equal(state["params"]["w"], _state(s)["params"]["w"])
        assert data == {"next_index": 10 * s}
    ckpt.close()


def test_a_checkpoint_that_cannot_fit_is_refused_before_writing(tmp_path, monkeypatch):
    from hyv_jax.training import checkpointing

    ckpt = TrainCheckpoints(tmp_path / "c")
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9 - 10, 10))
    with pytest.raises(CheckpointError, match=r"not enough disk space for a checkpoint in .*: it needs 0.0 MiB, 0.0 MiB "
                                               r"are free; free some space, keep fewer checkpoints"):
        ckpt.save(1, _state(1), {}, {})
    ckpt.close()
    assert ckpt.steps() == [] and not list((tmp_path / "c").iterdir())


FAILING_SAVE = """
import resource, sys
import jax.numpy as jnp, numpy as np
from configs.command_line import run_command
from hyv_jax.training.checkpointing import TrainCheckpoints

def main(argv):
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # writes past 100 kB fail (EFBIG)
    with TrainCheckpoints(argv[0]) as checkpoints:
        for step in (1, 2):
            checkpoints.save(step, {"w": jnp.asarray(np.random.default_rng(0).normal(size=(500, 100)), jnp.float32)},
                             {"next_index": step}, {"lora": False})

run_command(main, None, "train.py")
"""


def test_a_failing_async_save_ends_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-c", FAILING_SAVE, str(tmp_path / "c")], cwd=Path(__file__).parents[2],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"train.py: error: saving a checkpoint in {tmp_path / 'c'} failed (ValueError: ")
    assert lines[0].endswith("File too large [os_error_code='27']); the committed checkpoints are intact: fix the cause "
                             "(disk space, permissions) and --resume")
