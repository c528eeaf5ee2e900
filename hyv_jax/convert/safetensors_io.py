"""Reading and writing .safetensors with numpy alone (bf16 and fp8 through ml_dtypes).

Reading memory-maps the file: a tensor is only paged in when it is converted, so a 25 GB
checkpoint never needs a second copy in RAM.
"""

import json
import math
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from hyv_jax.io.atomic_file import write_replacing

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
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            prefix = f.read(8)
            header_len = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
            if header_len is None or header_len > size - 8:
                raise ValueError(f"{self.path} is not a .safetensors file or is truncated ({size} bytes; its first 8 bytes "
                                 f"give a header of {header_len} bytes): download or export it again")
            try:
                header = json.loads(f.read(header_len))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise ValueError(f"{self.path} is not a .safetensors file: its header is not JSON ({error})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{self.path} is not a .safetensors file: its header is not a JSON object")
        self.metadata = header.pop("__metadata__", {}) or {}
        self._data_start = 8 + header_len
        for name, entry in header.items():
            self._check_entry(name, entry, size - self._data_start)
        self._entries = header
        self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r") if size > self._data_start else np.zeros(0, np.uint8)

    def _check_entry(self, name: str, entry, data_bytes: int) -> None:
        """The header must describe each tensor completely and inside the file: a download cut
        short shows up here, before any tensor is read."""
        try:
            dtype, shape, (begin, end) = entry["dtype"], [int(n) for n in entry["shape"]], entry["data_offsets"]
        except (TypeError, KeyError, ValueError) as error:
            raise ValueError(f"{self.path} is not a valid .safetensors file: the header entry of {name} is "
                             f"malformed ({error!r})") from None
        if dtype not in DTYPES:
            raise ValueError(f"{self.path}: tensor {name} has dtype {dtype}, which this reader does not support "
                             f"(supported: {', '.join(DTYPES)})")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if not 0 <= begin <= end or end - begin != nbytes:
            raise ValueError(f"{self.path} is not a valid .safetensors file: tensor {name} {dtype} {tuple(shape)} needs "
                             f"{nbytes} bytes, its offsets give {end - begin}")
        if end > data_bytes:
            raise ValueError(f"{self.path} is truncated: tensor {name} ends at byte {self._data_start + end} of a "
                             f"{self._data_start + data_bytes}-byte file; download or export it again")

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def dtype(self, name: str) -> np.dtype:
        return DTYPES[self._entries[name]["dtype"]]

    def get(self, name: str) -> np.ndarray:
        entry = self._entries[name]
        begin, end = entry["data_offsets"]
        raw = self._mmap[self._data_start + begin : self._data_start + end]
        return raw.view(DTYPES[entry["dtype"]]).reshape(entry["shape"])


def write_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]], metadata: Mapping[str, str] | None = None) -> None:
    """Writes tensors in the given order, one at a time, into a temporary file renamed to `path`
    when complete (an interrupted write leaves any previous file there as it was)."""
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

    def write(temp: Path) -> None:
        with open(temp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for _, array in items:
                f.write(np.ascontiguousarray(array).tobytes())

    write_replacing(path, write)
