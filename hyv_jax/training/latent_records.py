"""Cached training examples on disk: ArrayRecord shards, one folder per bucket.

An example is the VAE latents of a clip (T, H, W, C) with its text states (L, D), mask (L,)
and pooled vector (D2,), stored as one record: a little-endian uint32 header length, a JSON
header {field: [dtype, shape]}, then the raw arrays in FIELDS order. (Not .npz: numpy parses
its headers with `ast`, which CPython 3.11 cannot run from several threads at once, and Grain
decodes records in threads.) Clips of one latent shape form a
bucket (resolution x duration), so a batch never mixes shapes:
    root/index.json                       {"buckets": {"t5_h8_w8": {"shape": [...], "count": n}}}
    root/t5_h8_w8/shard-00000.array_record
"""

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

INDEX = "index.json"


def bucket_name(latent_shape) -> str:
    t, h, w = latent_shape[:3]
    return f"t{t}_h{h}_w{w}"


FIELD_DTYPES = {"latents": np.float32, "text_states": np.float32, "text_mask": np.int32, "text_pooled": np.float32}
FIELDS = tuple(FIELD_DTYPES)


def encode_record(example: Mapping[str, np.ndarray]) -> bytes:
    missing = [f for f in FIELDS if f not in example]
    if missing:
        raise ValueError(f"example lacks {missing}; records hold {FIELDS}")
    arrays = [np.ascontiguousarray(example[f], FIELD_DTYPES[f]) for f in FIELDS]
    header = json.dumps({f: [a.dtype.str, list(a.shape)] for f, a in zip(FIELDS, arrays, strict=True)}).encode()
    return b"".join([struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays)])


def decode_record(data: bytes) -> dict[str, np.ndarray]:
    (size,) = struct.unpack_from("<I", data)
    header = json.loads(data[4 : 4 + size])
    specs = [(f, np.dtype(header[f][0]), tuple(header[f][1])) for f in FIELDS]
    expected = 4 + size + sum(int(np.prod(shape)) * dtype.itemsize for _, dtype, shape in specs)
    if expected != len(data):
        raise ValueError(f"record of {len(data)} bytes does not match its header ({expected} bytes); the shard is damaged")
    out, offset = {}, 4 + size
    for f, dtype, shape in specs:
        count = int(np.prod(shape))
        out[f] = np.frombuffer(data, dtype, count, offset).reshape(shape).copy()
        offset += count * dtype.itemsize
    return out


class ShardWriter:
    """Appends examples to per-bucket shards of at most `shard_size` records; `close()` writes
    the index."""

    def __init__(self, root: str | Path, shard_size: int = 1024):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if (self.root / INDEX).exists():
            raise FileExistsError(f"{self.root} already holds a dataset ({INDEX}); write to an empty folder")
        self.shard_size = shard_size
        self.buckets: dict[str, dict] = {}
        self.writers: dict[str, ArrayRecordWriter] = {}

    def write(self, example: Mapping[str, np.ndarray]) -> None:
        shape = tuple(int(s) for s in np.shape(example["latents"]))
        name = bucket_name(shape)
        info = self.buckets.setdefault(name, {"shape": list(shape), "count": 0, "shards": 0})
        if list(shape) != info["shape"]:
            raise ValueError(f"bucket {name} holds latents {info['shape']}, got {shape}")
        if info["count"] % self.shard_size == 0:
            if name in self.writers:
                self.writers[name].close()
            (self.root / name).mkdir(exist_ok=True)
            self.writers[name] = ArrayRecordWriter(str(self.root / name / f"shard-{info['shards']:05d}.array_record"), "group_size:1")
            info["shards"] += 1
        self.writers[name].write(encode_record(example))
        info["count"] += 1

    def close(self) -> dict:
        for w in self.writers.values():
            w.close()
        index = {"buckets": self.buckets}
        (self.root / INDEX).write_text(json.dumps(index, indent=1))
        return index


def write_records(root: str | Path, examples: Iterable[Mapping[str, np.ndarray]], shard_size: int = 1024) -> dict:
    writer = ShardWriter(root, shard_size)
    for ex in examples:
        writer.write(ex)
    return writer.close()


def read_index(root: str | Path) -> dict:
    path = Path(root) / INDEX
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: make the dataset with `python train.py prepare ...` first")
    return json.loads(path.read_text())
