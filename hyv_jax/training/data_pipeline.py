"""The Grain input pipeline over cached-latent shards.

Per bucket: read its shards, keep this host's share (every process_count-th record),
shuffle deterministically (reseeded each epoch), batch to the per-host batch; buckets are then
mixed in proportion to their sizes. The iterator's state (`get_state()`/`set_state()`) goes
into the training checkpoint, so a resumed run sees the very batches an unbroken one would.
"""

from pathlib import Path

import grain
import jax
import numpy as np

from hyv_jax.training.latent_records import decode_record, read_index


def _stack(examples):
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def training_batches(root: str | Path, global_batch: int, *, seed: int = 0, num_epochs: int | None = None,
                     process_index: int | None = None, process_count: int | None = None) -> grain.DatasetIterator:
    """An iterator of dicts of numpy arrays: this host's part of each global batch."""
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    if global_batch % process_count:
        raise ValueError(f"global batch {global_batch} must be divisible by the {process_count} hosts")
    local_batch = global_batch // process_count
    root = Path(root)
    datasets, sizes = [], []
    for name, info in sorted(read_index(root)["buckets"].items()):
        files = sorted(str(p) for p in (root / name).glob("shard-*.array_record"))
        if len(files) != info["shards"]:
            raise FileNotFoundError(f"bucket {name} lists {info['shards']} shards but {root / name} has {len(files)}")
        ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(files))[process_index::process_count]
        n_batches = len(ds) // local_batch
        if n_batches == 0:
            continue  # fewer clips than one batch: this bucket cannot form a batch
        ds = ds.shuffle(seed=seed).map(decode_record).batch(local_batch, drop_remainder=True, batch_fn=_stack)
        datasets.append(ds.repeat(num_epochs))
        sizes.append(n_batches)
    if not datasets:
        raise ValueError(f"no bucket of {root} has {local_batch} clips for one per-host batch: lower training.batch_size")
    mixed = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets, weights=[s / sum(sizes) for s in sizes])
    return iter(mixed.to_iter_dataset())
