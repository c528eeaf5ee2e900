"""`train.py train` as a two-host job: two JAX processes x two simulated CPU devices joined over
loopback (gloo collectives, /work/shared/spec/MULTIHOST.md), against one process fed the same
global batches.

- the default mesh (FSDP over all four devices), data 2 x fsdp 2 with LoRA (and a profile of
  step 5), and ring context parallelism across the processes: both processes log the same
  losses, equal to the single-process ones; final/ (and lora.safetensors) written by process 0
  only, restorable in this process; logs, TensorBoard and progress bars from process 0 only;
- SIGKILL of both processes during an async checkpoint save, then `--resume` with the
  persistent compilation cache on and one process compiling 35 s longer than the other (past
  gloo's 30 s): the run ends bit-identical to the uninterrupted one.
All runs share one small dataset, caption dropout (0.5: each process draws the global batch's
rows as one process does), the smallest transformer (one block of each kind) and XLA's
cheapest CPU compile settings; every process runs under a deadline.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from flax import nnx

from configs import load_config
from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND, read_converted_transformer, restore_transformer
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.training.build import build_trainer
from hyv_jax.training.caption_dropout import save_negative_prompt
from hyv_jax.training.data_pipeline import training_batches
from hyv_jax.training.latent_records import write_records
from hyv_jax.lora.merge import merge_lora_files

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.xdist_group("multiprocess_training")  # one worker runs the shared runs once
STEPS, BATCH = 6, 4
MODEL = ["transformer.double_blocks=1", "transformer.single_blocks=1", "transformer.refiner_blocks=1"]
TRAINING = [f"training.steps={STEPS}", f"training.batch_size={BATCH}", "training.log_every=1",
            "training.log_all_processes=True", "training.checkpoint.every=2", "training.optimizer.warmup_steps=1",
            "training.optimizer.lr=0.003", "training.lora.rank=2", "training.caption_dropout=0.5"]
LORA = ["training.lora.enabled=True"]
MESHES = {
    "default": [],  # fsdp=-1: all four devices, two per process
    "data2_fsdp2": ["parallel.mesh.data=2", "parallel.mesh.fsdp=2"],
    "context4_ring": ["parallel.mesh.fsdp=1", "parallel.mesh.context=4", "parallel.context_strategy=ring"],
}
# Each process: two CPU devices; XLA's quickest compile (same numerics: no fast math either way).
XLA_FLAGS = "--xla_force_host_platform_device_count={} --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
DEADLINE_S = 600
LOSS = re.compile(r"process (\d+) step (\d+): loss (\S+)")

# Loaded by the second process of the resumed run (PYTHONPATH): its first explicit compile (the
# training step's) takes 35 s longer, as when the other process finds it in the compilation cache.
SLOW_COMPILE = """
import os, time
import jax.stages
_compile = jax.stages.Lowered.compile
def _slow(self, *args, **kwargs):
    if os.environ.pop("SLOW_FIRST_COMPILE_S", None):
        time.sleep(35)
    return _compile(self, *args, **kwargs)
jax.stages.Lowered.compile = _slow
"""


def _examples(n, shape, seed):
    r = np.random.default_rng(seed)
    return [{"latents": r.normal(size=shape).astype(np.float32), "text_states": r.normal(size=(6, 32)).astype(np.float32),
             "text_mask": (np.arange(6) < 3 + i % 3).astype(np.int32), "text_pooled": r.normal(size=16).astype(np.float32)}
            for i in range(n)]


class _StandInEncoder:
    """encode() of the text encoders' shape for the data's text (6 tokens, 32 wide, pooled 16)."""

    def encode(self, prompts, *, mode):
        example = _examples(1, (1,), len(mode))[0]
        return SimpleNamespace(states=example["text_states"][None], mask=example["text_mask"][None],
                               pooled=example["text_pooled"][None])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Job:
    """The processes of one `train.py train` run, started together on one coordinator port."""

    def __init__(self, workdir: Path, overrides, *, processes=2, devices=2, extra=(), env=None, slow_process=None):
        port = _free_port()
        self.workdir = workdir
        self.procs, self.logs = [], []  # logs: each process's stdout and stderr
        for i in range(processes):
            e = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=XLA_FLAGS.format(devices), **(env or {}))
            e.setdefault("HYV_JAX_COMPILE_CACHE", "")
            args = [sys.executable, "train.py", "train", "--config", "configs/tiny.py", "--workdir", str(workdir), *extra,
                    *(f"--config.{o}" for o in overrides)]
            if processes > 1:
                e["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{port}"  # found by initialize_distributed
                args += [f"--config.parallel.coordinator_bind_address=127.0.0.1:{port}",
                         f"--config.parallel.num_processes={processes}", f"--config.parallel.process_id={i}"]
            if i == slow_process:
                e["PYTHONPATH"] = os.pathsep.join([str(workdir.parent / "slow_compile"), e.get("PYTHONPATH", "")])
                e["SLOW_FIRST_COMPILE_S"] = "1"
            self.logs.append(workdir.parent / f"{workdir.name}.process{i}.log")
            with open(self.logs[-1], "w") as log:
                self.procs.append(subprocess.Popen(args, cwd=ROOT, env=e, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        self.deadline = time.monotonic() + DEADLINE_S

    def kill(self):
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            p.wait()

    def wait(self) -> list[str]:
        """Every process's output; fails unless all exit 0 before the deadline."""
        try:
            for p in self.procs:
                p.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
        outputs = self.outputs()
        for i, (p, out) in enumerate(zip(self.procs, outputs)):
            assert p.returncode == 0, f"process {i} exited {p.returncode}:\n{out[-3000:]}"
        return outputs

    def outputs(self) -> list[str]:
        return [log.read_text() for log in self.logs]


def _losses(output: str, process: int) -> dict[int, float]:
    return {int(s): float(v) for p, s, v in LOSS.findall(output) if int(p) == process}


def _params(directory: Path) -> dict:
    return read_converted_transformer(directory)[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The dataset (one bucket of 16 clips; a 3-clip bucket too small for a global batch), a
    random base transformer for LoRA, and the single-process reference losses."""
    root = tmp_path_factory.mktemp("multiprocess")
    (root / "slow_compile").mkdir()
    (root / "slow_compile" / "sitecustomize.py").write_text(SLOW_COMPILE)
    write_records(root / "data", _examples(16, (2, 8, 8, 4), 0) + _examples(3, (1, 8, 8, 4), 1), shard_size=6)
    save_negative_prompt(_StandInEncoder(), root / "data")  # every run drops captions (training.caption_dropout)
    config = load_config("configs/tiny.py", MODEL)
    base = HunyuanVideoTransformer(TransformerConfig.from_mapping(config.transformer), rngs=nnx.Rngs(5))
    save_converted(root / "base", params_to_numpy(base), MODEL_KIND, base.config, "test", np.float32)
    one_device = ParallelPlan(jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",)))
    reference = {}
    for kind, extra in (("full", []), ("lora", LORA)):
        config = load_config("configs/tiny.py", [*MODEL, *TRAINING, *extra])
        trainer = build_trainer(config, one_device, root / "base" if extra else None, data_dir=root / "data")
        batches = training_batches(root / "data", BATCH)
        reference[kind] = {step: trainer.step(next(batches)).loss for step in range(1, STEPS + 1)}
    return root, reference


def _common(root):
    return ["--data", str(root / "data")]


def _check_one_writer(workdir: Path, outputs: list[str]):
    """Files and console output from process 0 only."""
    assert len(list((workdir / "tensorboard").iterdir())) == 1
    assert [p.name for p in (workdir / "final" / "transformer" / "params").glob("ocdbt.process_*")] == ["ocdbt.process_0"]
    assert "wrote " in outputs[0] and "wrote " not in outputs[1]
    assert "it/s" in outputs[0] and "it/s" not in outputs[1], "progress bar on process 0 only"


@pytest.fixture(scope="module")
def default_run(setup):
    root, _ = setup
    workdir = root / "default"
    env = {"HYV_JAX_COMPILE_CACHE": str(root / "xla_cache")}  # the resumed run below compiles from it
    start = time.monotonic()
    outputs = Job(workdir, [*MODEL, *TRAINING, *MESHES["default"]], extra=_common(root), env=env).wait()
    print(f"default mesh, 2 processes: {time.monotonic() - start:.0f} s")
    return workdir, outputs


@pytest.mark.parametrize("mesh", ["default", "data2_fsdp2", "context4_ring"])
def test_two_processes_train_like_one(setup, default_run, mesh):
    root, reference = setup
    lora = mesh == "data2_fsdp2"
    if mesh == "default":
        workdir, outputs = default_run
    else:
        workdir = root / mesh
        start = time.monotonic()
        extra = [*_common(root), "--init", str(root / "base"), "--profile_steps", "5:5"] if lora else _common(root)
        outputs = Job(workdir, [*MODEL, *TRAINING, *(LORA if lora else []), *MESHES[mesh]], extra=extra).wait()
        print(f"{mesh}, 2 processes: {time.monotonic() - start:.0f} s")
    ref = reference["lora" if lora else "full"]
    losses = [_losses(out, i) for i, out in enumerate(outputs)]
    print(f"{mesh} ({'LoRA' if lora else 'full'}): step, one process, process 0, process 1")
    for step in ref:
        print(f"  {step}  {ref[step]:.9g}  {losses[0].get(step, float('nan')):.9g}  {losses[1].get(step, float('nan')):.9g}")
    assert losses[0] == losses[1], "both processes compute the same replicated loss"
    np.testing.assert_allclose([losses[0][s] for s in ref], list(ref.values()), rtol=1e-5)
    _check_one_writer(workdir, outputs)
    final = workdir / "final"
    model = restore_transformer(final / "transformer")  # one process restores what two wrote
    if lora:
        for i in range(2):  # each process traced its own devices
            assert len(list((workdir / "profile" / f"process_{i}").rglob("*.xplane.pb"))) == 1
        merged = restore_transformer(root / "base")
        merge_lora_files(merged, [(final / "lora.safetensors", 1.0)])
        merged = params_to_numpy(merged)
        for path, value in params_to_numpy(model).items():
            np.testing.assert_allclose(value, merged[path], rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_kill_during_async_save_then_resume_is_bit_identical(setup, default_run):
    root, _ = setup
    uninterrupted, outputs = default_run
    workdir = root / "killed"
    env = {"HYV_JAX_COMPILE_CACHE": str(root / "xla_cache")}
    overrides = [*MODEL, *TRAINING, "training.checkpoint.every=1"]
    start = time.monotonic()
    job = Job(workdir, overrides, extra=_common(root), env=env)
    in_flight = None
    while in_flight is None and time.monotonic() < job.deadline and all(p.poll() is None for p in job.procs):
        saving = [p.name for p in (workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*")]
        in_flight = next((int(n.split(".")[0]) for n in saving if int(n.split(".")[0]) >= 3), None)
        time.sleep(0.005)
    job.kill()
    assert in_flight is not None, "no async save caught in flight:\n" + job.outputs()[0][-2000:]
    committed = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    print(f"killed while saving step {in_flight}; committed {committed}; {time.monotonic() - start:.0f} s")
    assert in_flight not in committed

    # Process 0 finds the step in the compilation cache, process 1 compiles 35 s longer.
    start = time.monotonic()
    resumed = Job(workdir, overrides, extra=[*_common(root), "--resume"], env=env, slow_process=1).wait()
    print(f"resumed, 2 processes: {time.monotonic() - start:.0f} s")
    assert f"resumed from step {committed[-1]} of {workdir / 'checkpoints'}" in resumed[0]
    before = _losses(outputs[0], 0)
    for i in range(2):
        after = _losses(resumed[i], i)
        assert after and after == {s: before[s] for s in after}, (after, before)
    ours, theirs = _params(workdir / "final" / "transformer"), _params(uninterrupted / "final" / "transformer")
    assert ours.keys() == theirs.keys()
    for path in ours:
        np.testing.assert_array_equal(ours[path], theirs[path], err_msg=str(path))
