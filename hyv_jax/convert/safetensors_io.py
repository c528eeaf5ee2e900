"""Reading and writing .safetensors with numpy alone (bf16 and fp8 through ml_dtypes).

Reading memory-maps the file: a tensor is only paged in when it is converted, so a 25 GB
checkpoint never needs a second copy in RAM.
"""

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
NAMES = {v: k for k, v in DTYPES.items()}


class SafetensorsFile:
    """Lazy read access: `keys()`, `shape(name)`, `get(name)` (a read-only memory-mapped view)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_len))
        self.metadata = header.pop("__metadata__", {}) or {}
        self._entries = header
        self._data_start = 8 + header_len
        self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        entry = self._entries[name]
        if entry["dtype"] not in DTYPES:
            raise ValueError(f"{self.path}: tensor {name} has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        raw = self._mmap[self._data_start + begin : self._data_start + end]
        return raw.view(DTYPES[entry["dtype"]]).reshape(entry["shape"])


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], metadata: Mapping[str, str] | None = None) -> None:
    """Writes tensors in the given order; values are written one at a time."""
    items = list(tensors.items()) if isinstance(tensors, Mapping) else list(tensors)
    header, offset = {}, 0
    for name, array in items:
        dtype = np.dtype(array.dtype)
        if dtype not in NAMES:
            raise ValueError(f"cannot write {name}: dtype {dtype} has no safetensors name")
        nbytes = int(np.prod(array.shape, dtype=np.int64)) * dtype.itemsize
        header[name] = {"dtype": NAMES[dtype], "shape": list(array.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = dict(metadata)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, array in items:
            f.write(np.ascontiguousarray(array).tobytes())
