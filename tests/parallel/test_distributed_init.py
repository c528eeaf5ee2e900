"""initialize_distributed: when it joins a multi-process job (config fields, or an environment
that names one) and what it hands jax.distributed.initialize (bind address, timeouts)."""

import jax
import pytest

from configs import load_config
from hyv_jax.parallel.mesh import initialize_distributed, launcher_from_environment


@pytest.mark.parametrize("env, launcher", [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "JAX_COORDINATOR_ADDRESS"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"}, "SLURM"),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),  # one task: nothing to join
    ({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}, "GKE TPU"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single-host TPU VM
    ({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "8"}, "Open MPI"),
])
def test_launcher_from_environment(env, launcher):
    assert launcher_from_environment(env) == launcher


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: seen.append(kwargs))
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_a_single_process_run_does_not_join(calls):
    assert not initialize_distributed(load_config("configs/tiny.py").parallel)
    assert calls == []


def test_the_environment_or_the_config_starts_a_job_with_bind_address_and_timeouts(calls, monkeypatch):
    parallel = load_config("configs/tiny.py", ["parallel.coordinator_bind_address=127.0.0.1:5000",
                                               "parallel.heartbeat_timeout_s=30", "parallel.shutdown_timeout_s=20"]).parallel
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:5000")
    assert initialize_distributed(parallel)
    assert calls == [dict(coordinator_bind_address="127.0.0.1:5000", initialization_timeout=300,
                          heartbeat_timeout_seconds=30, shutdown_timeout_seconds=20)]
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    explicit = load_config("configs/tiny.py", ["parallel.coordinator_address=10.0.0.1:5000", "parallel.num_processes=4",
                                               "parallel.process_id=2"]).parallel
    assert initialize_distributed(explicit)
    assert calls[1] == dict(coordinator_address="10.0.0.1:5000", num_processes=4, process_id=2, coordinator_bind_address=None,
                            initialization_timeout=300, heartbeat_timeout_seconds=100, shutdown_timeout_seconds=300)


def test_distributed_true_always_joins_and_false_never(calls, monkeypatch):
    assert initialize_distributed(load_config("configs/tiny.py", ["parallel.distributed=True"]).parallel)  # JAX detects
    assert calls == [dict(coordinator_bind_address=None, initialization_timeout=300, heartbeat_timeout_seconds=100,
                          shutdown_timeout_seconds=300)]
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert not initialize_distributed(load_config("configs/tiny.py", ["parallel.distributed=False"]).parallel)
    assert len(calls) == 1
