"""Opening a PyTorch checkpoint as a lazy {name: numpy array} source.

Reads `.safetensors` (one file, or a folder / `*.index.json` of shards), PyTorch pickles
(`.pt`, `.pth`, `.bin`, loaded with `mmap=True`; torch must be installed for these), wrapper
dicts ("module", "ema", "state_dict"), and fp8 checkpoints with a scale map
(w = w8 * scale, rounded once in the target dtype as upstream). A file that cannot be read
that way (truncated, legacy format, fp8 without its map) is refused with what to do.
"""

import json
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

from hyv_jax.convert.safetensors_io import SafetensorsFile
from hyv_jax.nn.fp8 import dequantize_fp8

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WRAPPER_KEYS = ("module", "ema", "state_dict", "model")
FP8_DTYPES = (np.dtype(ml_dtypes.float8_e4m3fn), np.dtype(ml_dtypes.float8_e5m2))
# torch.save's pre-1.6 format starts with this pickled magic number (torch/serialization.py MAGIC_NUMBER)
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


class TensorSource:
    """A read-only mapping of tensor names to lazily loaded numpy arrays. `dtypes` (name ->
    stored dtype) is known for files opened here, not for derived views."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]], load: Callable[[str], np.ndarray], description: str,
                 dtypes: Mapping[str, np.dtype] | None = None):
        self._shapes = dict(shapes)
        self._load = load
        self.description = description
        self.dtypes = dict(dtypes or {})

    def keys(self) -> list[str]:
        return list(self._shapes)

    def __contains__(self, name: str) -> bool:
        return name in self._shapes

    def shape(self, name: str) -> tuple[int, ...]:
        return self._shapes[name]

    def get(self, name: str) -> np.ndarray:
        return self._load(name)

    def renamed(self, strip_prefix: str) -> "TensorSource":
        """The same tensors with `strip_prefix` removed from names that carry it."""
        mapping = {k[len(strip_prefix):] if k.startswith(strip_prefix) else k: k for k in self._shapes}
        return TensorSource({n: self._shapes[k] for n, k in mapping.items()}, lambda n: self._load(mapping[n]), self.description,
                            {n: self.dtypes[k] for n, k in mapping.items() if k in self.dtypes})


def from_arrays(arrays: Mapping[str, np.ndarray], description: str = "in-memory arrays") -> TensorSource:
    return TensorSource({k: tuple(v.shape) for k, v in arrays.items()}, lambda k: np.asarray(arrays[k]), description,
                        {k: np.asarray(v).dtype for k, v in arrays.items()})


def torch_to_numpy(tensor) -> np.ndarray:
    """A CPU torch tensor as numpy without copying where possible; bf16/fp8 via ml_dtypes."""
    import torch

    special = {
        torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
        torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn),
        torch.float8_e5m2: (torch.uint8, ml_dtypes.float8_e5m2),
    }
    tensor = tensor.detach().cpu()
    if tensor.dtype in special:
        carrier, dtype = special[tensor.dtype]
        return tensor.view(carrier).numpy().view(dtype)
    return tensor.numpy()


def _unwrap(state: Mapping, path: Path) -> Mapping:
    """Descends through {"module": ...} / {"ema": ...} / {"state_dict": ...} wrappers."""
    while isinstance(state, Mapping) and not any(hasattr(v, "shape") for v in state.values()):
        found = [k for k in WRAPPER_KEYS if k in state]
        if not found:
            raise ValueError(f"{path}: no tensors found; top-level keys are {sorted(state)[:10]}")
        state = state[found[0]]
    return state


def _load_torch(path: Path) -> Mapping:
    """torch.load, memory-mapped and weights only; a file it cannot read that way is refused
    with what it is and what to do."""
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"reading {path} needs PyTorch: pip install torch (or convert .safetensors files)") from e
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            legacy = f.read(len(_LEGACY_TORCH_MAGIC)) == _LEGACY_TORCH_MAGIC
        if legacy:
            raise ValueError(f"{path} uses PyTorch's legacy (pre-1.6, non-zip) format, which cannot be memory-mapped; save it "
                             f"again in the current format: python -c \"import torch; torch.save(torch.load('{path}', "
                             f"weights_only=True), '{path.with_suffix('.zip.pt')}')\" and convert that file")
        raise ValueError(f"{path} is not a PyTorch checkpoint (torch.save writes zip archives; this file is not one, "
                         f"or is truncated): download or save it again")
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"{path} holds Python objects other than tensors, which are not loaded (weights_only): "
                         f"{str(error).splitlines()[-1].strip()}") from error
    except RuntimeError as error:  # a damaged archive
        raise ValueError(f"cannot read {path} ({str(error).splitlines()[0].strip()}): the file is damaged or "
                         f"truncated; download or save it again") from error


def _numpy_dtype(torch_dtype) -> np.dtype | None:
    import torch

    try:
        return torch_to_numpy(torch.empty(0, dtype=torch_dtype)).dtype
    except TypeError:  # a dtype numpy has no counterpart for
        return None


def _open_torch(path: Path) -> TensorSource:
    state = _unwrap(_load_torch(path), path)
    tensors = {k: v for k, v in state.items() if hasattr(v, "shape")}
    dtypes = {}
    for k, v in tensors.items():
        dtypes.setdefault(v.dtype, _numpy_dtype(v.dtype))
    return TensorSource({k: tuple(v.shape) for k, v in tensors.items()}, lambda k: torch_to_numpy(tensors[k]), str(path),
                        {k: dtypes[v.dtype] for k, v in tensors.items() if dtypes[v.dtype] is not None})


def _open_safetensors(files: list[Path], description: str) -> TensorSource:
    owner, shapes = {}, {}
    for f in files:
        st = SafetensorsFile(f)
        for k in st.keys():
            if k in owner:
                raise ValueError(f"tensor {k} appears in both {owner[k].path} and {f}")
            owner[k], shapes[k] = st, st.shape(k)
    return TensorSource(shapes, lambda k: owner[k].get(k), description, {k: st.dtype(k) for k, st in owner.items()})


def _sharded_files(index: Path) -> list[Path]:
    weight_map = json.loads(index.read_text())["weight_map"]
    return [index.parent / name for name in sorted(set(weight_map.values()))]


def open_checkpoint(path: str | Path, fp8_map: str | Path | None = None, dtype=np.float32, *, keep_fp8: bool = False) -> TensorSource:
    """Opens a file or folder; `fp8_map` is the `*_fp8_map.pt` of an fp8 checkpoint, whose
    weights are then dequantised in `dtype` (the dtype they are converted to), as upstream does
    in its model dtype. fp8 tensors without a map are refused: their values are meaningless
    without the scales, unless `keep_fp8` (the caller reads them raw and pairs them with the
    map's scales itself: convert/fp8_weights.py)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        indexes = sorted(path.glob("*.safetensors.index.json"))
        files = _sharded_files(indexes[0]) if len(indexes) == 1 else sorted(path.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .safetensors files (or one *.safetensors.index.json)")
        source = _open_safetensors(files, str(path))
    elif path.name.endswith(".index.json"):
        source = _open_safetensors(_sharded_files(path), str(path))
    elif path.suffix == ".safetensors":
        source = _open_safetensors([path], str(path))
    elif path.suffix in TORCH_SUFFIXES:
        source = _open_torch(path)
    else:
        raise ValueError(f"{path}: unknown checkpoint format; expected .safetensors, an index json, a folder, or {TORCH_SUFFIXES}")
    fp8 = [k for k, d in source.dtypes.items() if d in FP8_DTYPES]
    if fp8_map is None and fp8 and not keep_fp8:
        raise ValueError(f"{path} stores {len(fp8)} tensors in fp8 (e.g. {fp8[0]}), which mean nothing without their scales: "
                         f"pass the scale map with --fp8-map (mp_rank_00_model_states_fp8_map.pt beside the checkpoint)")
    if fp8_map is not None and not fp8:
        raise ValueError(f"--fp8-map {fp8_map} given but {path} stores no tensor in fp8; leave --fp8-map out for this checkpoint")
    return with_fp8_scales(source, fp8_map, dtype) if fp8_map is not None else source


def with_fp8_scales(source: TensorSource, fp8_map: str | Path | Mapping, dtype=np.float32) -> TensorSource:
    """Dequantises `<module>.weight` tensors stored in fp8 with the map {module: scale} in
    bfloat16 as upstream (hyv_jax.nn.fp8.dequantize_fp8), returned in `dtype`."""
    scales = fp8_map if isinstance(fp8_map, Mapping) else _load_torch(Path(fp8_map))
    scales = {k: np.asarray(torch_to_numpy(v) if hasattr(v, "detach") else v, np.float32).reshape(()) for k, v in scales.items()}
    missing = [m for m in scales if f"{m}.weight" not in source]
    if missing:
        raise ValueError(f"fp8 map names modules absent from the checkpoint: {missing[:10]} ({len(missing)} in all)")

    def load(name: str) -> np.ndarray:
        array = source.get(name)
        if array.dtype not in FP8_DTYPES:
            return array
        module = name.removesuffix(".weight")
        if module not in scales:
            raise ValueError(f"{name} is stored in fp8 but the fp8 map has no scale for {module}")
        # in bf16 as upstream's --use-fp8 (the DiT's dtype): hyvideo/modules/fp8_optimization.py:50-53,98; then stored
        return dequantize_fp8(array, scales[module], ml_dtypes.bfloat16).astype(dtype)

    dtypes = {k: np.dtype(dtype) if d in FP8_DTYPES else d for k, d in source.dtypes.items()}
    return TensorSource({k: source.shape(k) for k in source.keys()}, load, f"{source.description} (fp8, scales from map)", dtypes)
