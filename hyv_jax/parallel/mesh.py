"""Device meshes from the `parallel` config section, and multi-host start-up.

Axes: `data` (batch), `fsdp` (batch, and parameters sharded over the model width), `context`
(the token sequence), `tensor` (heads and MLP width). For the combined Ulysses x ring context
parallelism ("usp") the context devices form two mesh axes: `context_ring` (outer, the ring)
times `context` (inner, the Ulysses all-to-all of size `ulysses_degree`), so the all-to-all
stays among neighbouring devices.
"""

import os
from collections.abc import Mapping

import jax
from jax.sharding import Mesh

AXES = ("data", "fsdp", "context", "tensor")
CONTEXT_STRATEGIES = ("none", "ulysses", "ring", "usp")


def make_mesh(shape: Mapping[str, int]) -> Mesh:
    """A mesh over all devices; one axis may be -1 (fill with the remaining devices)."""
    sizes = dict(shape)
    known = 1
    for size in sizes.values():
        known *= size if size != -1 else 1
    n = jax.device_count()
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1 or n % known:
        raise ValueError(f"mesh {sizes} does not fit {n} devices (at most one axis may be -1)")
    if fill:
        sizes[fill[0]] = n // known
    if not fill and known != n:
        raise ValueError(f"mesh {sizes} uses {known} of {n} devices; make the sizes multiply to {n} or use -1")
    # Auto axes: XLA propagates shardings from the parameters through the activations (Explicit
    # axes reject some of the model's dot_generals).
    return jax.make_mesh(tuple(sizes.values()), tuple(sizes), axis_types=(jax.sharding.AxisType.Auto,) * len(sizes))


def mesh_from_config(parallel: Mapping) -> Mesh:
    """The mesh of a `parallel` config section: `mesh` {data, fsdp, context, tensor} (-1 =
    fill), `context_strategy` and, for "usp", `ulysses_degree`."""
    shape = dict(parallel["mesh"])
    unknown = set(shape) - set(AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; use {AXES}")
    strategy = parallel.get("context_strategy", "none")
    if strategy not in CONTEXT_STRATEGIES:
        raise ValueError(f"unknown context_strategy {strategy!r}; choose one of {CONTEXT_STRATEGIES}")
    mesh = make_mesh({a: shape.get(a, 1) for a in AXES})
    if strategy != "usp":
        return mesh
    context, ulysses = mesh.shape["context"], parallel.get("ulysses_degree", 1)
    if ulysses < 1 or context % ulysses:
        raise ValueError(f"ulysses_degree {ulysses} must divide the context axis size {context}")
    sizes = {"data": mesh.shape["data"], "fsdp": mesh.shape["fsdp"], "context_ring": context // ulysses,
             "context": ulysses, "tensor": mesh.shape["tensor"]}
    return make_mesh(sizes)


def launcher_from_environment(env: Mapping[str, str] | None = None) -> str | None:
    """The multi-process launcher this process runs under, judged from the environment
    variables `jax.distributed.initialize` reads, or None for a single-process run."""
    env = os.environ if env is None else env

    def count(name: str) -> int:
        try:
            return int(env.get(name, "1"))
        except ValueError:
            return 1

    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "JAX_COORDINATOR_ADDRESS"
    if "SLURM_JOB_ID" in env and count("SLURM_NTASKS") > 1:
        return "SLURM"
    if len([h for h in (env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or "").split(",") if h]) > 1:
        return "GKE TPU"
    if "OMPI_MCA_orte_hnp_uri" in env and count("OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI"
    return None


def initialize_distributed(parallel: Mapping) -> bool:
    """Joins the processes of a multi-host job (call before any other JAX use); returns whether
    it did. `distributed`: True joins (coordinator fields left empty are detected by JAX: SLURM,
    Cloud TPU VMs and GKE, Open MPI, $JAX_COORDINATOR_ADDRESS), False never does, None joins
    when a config field or the environment names a multi-process job (launcher_from_environment;
    a Cloud TPU VM slice found only through its metadata server needs True).
    `coordinator_bind_address` (default $JAX_COORDINATOR_BIND_ADDRESS, else every interface at
    the coordinator's port) is where process 0 listens; the timeouts bound the wait for all
    processes to join, the silence after which a lost process fails the job, and the wait for
    all to shut down."""
    explicit = {k: parallel[k] for k in ("coordinator_address", "num_processes", "process_id")
                if parallel.get(k) not in (None, "", -1)}
    distributed = parallel.get("distributed")
    if distributed is False or (distributed is None and not explicit and launcher_from_environment() is None):
        return False
    jax.distributed.initialize(
        **explicit,
        coordinator_bind_address=parallel.get("coordinator_bind_address") or None,
        initialization_timeout=int(parallel.get("initialization_timeout_s", 300)),
        heartbeat_timeout_seconds=int(parallel.get("heartbeat_timeout_s", 100)),
        shutdown_timeout_seconds=int(parallel.get("shutdown_timeout_s", 300)),
    )
    return True
