"""The processes of a multi-host job: every process runs the same program on its own devices;
collective steps (compiling, gathering arrays, checkpoints) run on all of them, while files
and console output come from process 0 alone.

Barriers wait on the coordinator's key-value store, not on a device collective: CPU
collectives (gloo) give every process only 30 s to reach a device group's first collective,
which one slow compile can exceed.
"""

import itertools
from collections.abc import Iterable

import jax
import numpy as np
from jax.experimental import multihost_utils

BARRIER_TIMEOUT_S = 3600  # a 13B step compiles for minutes, longer on a host that misses the cache
_barrier_ids = itertools.count()


def is_main() -> bool:
    """True on the process that writes files and prints (process 0)."""
    return jax.process_index() == 0


def main_print(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Returns once every process has reached the barrier of this name (no-op with one process).
    Every process must pass the same barriers in the same order."""
    if jax.process_count() == 1:
        return
    from orbax.checkpoint import multihost

    multihost.get_barrier_sync_fn()(key=f"hyv_jax.{name}.{next(_barrier_ids)}", timeout_ms=timeout_s * 1000)


def check_same_everywhere(values: Iterable[int], what: str) -> None:
    """Raises on every process unless all processes pass equal integers; `what` names them in
    the error. A collective: every process must call it at the same point."""
    local = np.asarray(list(values), np.int32)
    if jax.process_count() == 1:
        return
    everyone = multihost_utils.process_allgather(local)  # (processes, n)
    differing = [p for p in range(len(everyone)) if not np.array_equal(everyone[p], everyone[0])]
    if differing:
        raise RuntimeError(f"processes disagree on {what}: process 0 has {everyone[0].tolist()}, "
                           + ", ".join(f"process {p} has {everyone[p].tolist()}" for p in differing))


def to_host(x) -> np.ndarray:
    """A jax.Array (sharded over any processes' devices) or array-like as one numpy array; a
    collective for arrays that span other processes' devices."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:  # every process holds it whole: no collective needed
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def local_rows(sharding: jax.sharding.Sharding, size: int) -> list[int]:
    """The indices along axis 0 of a global array of `size` rows (sharded by `sharding`) that
    this process's devices hold; processes holding replicas get the same rows."""
    rows = set()
    for index in sharding.addressable_devices_indices_map((size,)).values():
        rows.update(range(size)[index[0]])
    return sorted(rows)


def from_local_rows(local: np.ndarray, rows: list[int], sharding: jax.sharding.Sharding, size: int) -> jax.Array:
    """The global array of `size` rows whose rows `rows` (this process's, in order) are `local`,
    placed on this process's devices per `sharding`."""
    position = {row: i for i, row in enumerate(rows)}
    shape = (size, *local.shape[1:])
    pieces = [jax.device_put(local[[position[r] for r in range(size)[index[0]]]], device)
              for device, index in sharding.addressable_devices_indices_map(shape).items()]
    return jax.make_array_from_single_device_arrays(shape, sharding, pieces)
