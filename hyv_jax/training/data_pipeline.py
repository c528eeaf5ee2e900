"""The Grain input pipeline over cached-latent shards.

The stream of global batches depends only on the data, the seed and the global batch size,
never on the number of processes: per bucket, the clips are shuffled (reseeded each epoch) and
global batch k of an epoch is clips k*B .. k*B+B-1 of that order (the remainder is dropped);
buckets are mixed in proportion to their global batch counts, so every process picks the same
bucket at the same step. A process reads only the rows of each global batch its devices hold
(`rows`, from the batch sharding: processes holding replicas of one batch shard read the same
records). The iterator's state (`get_state()`/`set_state()`) is a global batch count that goes
into the training checkpoint: a resumed run sees the very batches an unbroken one would, with
any number of processes.
"""

from collections.abc import Sequence
from pathlib import Path

import grain
import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from hyv_jax.training.latent_records import decode_record, read_index

# Enough batches ahead to hide reading and decoding behind a training step, few enough that
# long high-resolution clips do not fill the host's memory.
READ_OPTIONS = grain.ReadOptions(num_threads=4, prefetch_buffer_size=4)


class DamagedShardError(ValueError):
    pass


def _damaged(path: str, detail: str) -> DamagedShardError:
    return DamagedShardError(f"shard {path} is damaged ({detail}); prepare the dataset again with "
                             "`train.py prepare`, or restore that file")


class BucketShards:
    """The records of one bucket's shard files, opened and counted up front so a damaged file
    is named before training starts."""

    def __init__(self, files: Sequence[str], expected_count: int):
        self.files = list(files)
        counts = []
        for path in self.files:
            try:
                reader = ArrayRecordReader(path)
                counts.append(reader.num_records())
                reader.close()
            except Exception as e:  # noqa: BLE001 - array_record raises RuntimeError/OSError without the path
                raise _damaged(path, f"{type(e).__name__}: {e}") from e
        if sum(counts) != expected_count:
            raise _damaged(", ".join(self.files), f"they hold {sum(counts)} records, the dataset index lists {expected_count}")
        self.ends = np.cumsum(counts)
        self.source = grain.sources.ArrayRecordDataSource(self.files)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """The decoded records at these indices (into the bucket's concatenated shards)."""
        try:
            raw = self.source.__getitems__(list(indices))
        except Exception:  # noqa: BLE001 - find which record fails, to name its file
            raw = [self._read_one(i) for i in indices]
        out = []
        for i, data in zip(indices, raw, strict=True):
            try:
                out.append(decode_record(data))
            except Exception as e:  # noqa: BLE001
                raise self._error(i, e) from e
        return out

    def _read_one(self, index: int) -> bytes:
        try:
            return self.source[index]
        except Exception as e:  # noqa: BLE001
            raise self._error(index, e) from e

    def _error(self, index: int, error: Exception) -> DamagedShardError:
        shard = int(np.searchsorted(self.ends, index, side="right"))
        start = int(self.ends[shard - 1]) if shard else 0
        return _damaged(self.files[shard], f"record {index - start}: {type(error).__name__}: {error}")


class GlobalBatchRows(grain.MapDataset):
    """Element k: the `rows` of global batch k (epochs continue past len(), reshuffled)."""

    def __init__(self, shards: BucketShards, global_batch: int, rows: Sequence[int], seed: int):
        order = grain.MapDataset.range(len(shards)).shuffle(seed=seed)
        super().__init__(order)
        self._order, self._shards = order, shards
        self._global_batch, self._rows = global_batch, list(rows)
        self._per_epoch = len(shards) // global_batch

    def __len__(self) -> int:
        return self._per_epoch

    def __str__(self) -> str:
        return f"GlobalBatchRows(batch={self._global_batch}, rows={self._rows[0]}..{self._rows[-1]})"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, k = divmod(index, self._per_epoch)
        first = epoch * len(self._shards) + k * self._global_batch  # the shuffle reseeds per epoch
        examples = self._shards.read([self._order[first + r] for r in self._rows])
        return {name: np.stack([e[name] for e in examples]) for name in examples[0]}


def training_batches(root: str | Path, global_batch: int, *, rows: Sequence[int] | None = None, seed: int = 0,
                     num_epochs: int | None = None) -> grain.DatasetIterator:
    """An iterator of dicts of numpy arrays: rows `rows` (default all) of each global batch."""
    rows = list(range(global_batch)) if rows is None else sorted(rows)
    if not rows or rows[0] < 0 or rows[-1] >= global_batch:
        raise ValueError(f"rows {rows} of a global batch of {global_batch}: each must be in 0..{global_batch - 1}")
    root = Path(root)
    datasets, sizes = [], []
    for name, info in sorted(read_index(root)["buckets"].items()):
        files = sorted(str(p) for p in (root / name).glob("shard-*.array_record"))
        if len(files) != info["shards"]:
            raise FileNotFoundError(f"bucket {name} lists {info['shards']} shards but {root / name} has {len(files)}")
        n_batches = info["count"] // global_batch
        if n_batches == 0:
            continue  # fewer clips than one global batch: this bucket cannot form a batch
        datasets.append(GlobalBatchRows(BucketShards(files, info["count"]), global_batch, rows, seed).repeat(num_epochs))
        sizes.append(n_batches)
    if not datasets:
        raise ValueError(f"no bucket of {root} has {global_batch} clips for one global batch: lower training.batch_size")
    mixed = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets, weights=[s / sum(sizes) for s in sizes])
    return iter(mixed.to_iter_dataset(READ_OPTIONS))
