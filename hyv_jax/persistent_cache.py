"""What a process keeps for the next one beyond JAX's persistent compilation cache, which skips
only XLA's compile: every process still traces and lowers each program to get its key (the
tiny default's decoder ~0.5 s, its denoising step ~0.35 s, of a 4.5 s run) and builds each
model's abstract form (its VAE ~0.2 s). Here:

- `PersistentProgram`: a jitted function whose executables a later process loads untraced;
- `persistent_value`: a value computed once from picklable inputs (abstract models).

Both are keyed by what decides them: the pickled inputs (a lambda or a local function among
them cannot be pickled, which makes the entry uncacheable rather than keyed by a name that
could hide other code), for programs the argument structure, shapes, dtypes and shardings, and
for all the hyv_jax sources, the JAX/Flax versions, the devices, XLA_FLAGS, every JAX config
value and the context variables set. Entries live in `<JAX's cache dir>/hyv_jax`, only while
that cache is enabled and in single-process runs; an unreadable entry is computed again. A
program not found is compiled afresh, not loaded from JAX's cache (see `_load_or_compile`), so
after the sources change each program compiles once in full."""

import contextvars
import functools
import hashlib
import io
import os
import pickle
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import flax
import jax
import jaxlib
from jax._src import (
    config as jax_config,  # the persistent cache's switch, as a thread-local context
)
from jax.experimental import serialize_executable

from hyv_jax.io.atomic_file import write_replacing

FORMAT = 1  # bump when the stored layout changes
SUBDIR = "hyv_jax"
T = TypeVar("T")


@functools.cache
def sources_digest() -> str:
    """sha256 over every .py file of the hyv_jax package (paths and contents)."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def environment_key() -> bytes:
    """What decides an entry besides its own inputs: versions, devices, flags, JAX's config and
    the context variables set around the call (trace-time switches such as
    nn/backend_form.accelerator_form); read at each call, as any of them may change."""
    devices = [(d.id, d.platform, d.device_kind, d.process_index) for d in jax.devices()]
    config = sorted((k, repr(v)) for k, v in jax.config.values.items())
    return repr((FORMAT, jax.__version__, jaxlib.__version__, flax.__version__, jax.devices()[0].client.platform_version,
                 devices, os.environ.get("XLA_FLAGS", ""), config, _context(), sources_digest())).encode()


def _device(platform: str, device_id: int):
    """Stands for a device in keys (never unpickled)."""
    raise TypeError("a key is not unpickled")


class _KeyPickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, jax.Device):  # a mesh's devices, which pickle cannot write
            return _device, (obj.platform, obj.id)
        return NotImplemented


def key_bytes(values: Sequence) -> bytes | None:
    """The values pickled as a key, or None when one cannot be pickled by value or by an
    importable name (lambdas, local functions, live objects) or is cyclic. Pickled without
    the memo: with it the bytes follow which equal objects are shared, and a model graph
    unpickled from an entry would key differently from the one built."""
    buffer = io.BytesIO()
    pickler = _KeyPickler(buffer, protocol=5)
    pickler.fast = True
    try:
        pickler.dump(tuple(values))
    except (pickle.PicklingError, TypeError, AttributeError, ValueError, RecursionError):
        return None
    return buffer.getvalue()


def _pickled(value) -> bytes | None:
    try:
        return pickle.dumps(value, protocol=5)
    except (pickle.PicklingError, TypeError, AttributeError):
        return None


def signature(args: tuple) -> tuple:
    """(structure, avals, shardings) of a call's arguments, hashable."""
    leaves, tree = jax.tree.flatten(args)
    return tree, tuple(jax.typeof(leaf) for leaf in leaves), tuple(getattr(leaf, "sharding", None) for leaf in leaves)


def _signature_text(signature: tuple) -> str:
    tree, avals, shardings = signature
    return repr((str(tree), [f"{aval}@{sharding!r}" for aval, sharding in zip(avals, shardings)]))  # str marks weak types ~


def _context() -> tuple:
    return tuple(sorted((var.name, repr(value)) for var, value in contextvars.copy_context().items()))


def cache_folder() -> Path | None:
    """`<JAX's persistent cache dir>/hyv_jax`, or None when that cache is off or the run has
    several processes (their programs meet in collectives: each compiles, as before)."""
    directory = jax.config.jax_compilation_cache_dir
    if not directory or jax.process_count() > 1:
        return None
    return Path(directory) / SUBDIR


def entry_path(folder: Path, name: str, *parts: bytes) -> Path:
    """NAME-SOURCES-KEY.bin: SOURCES (the sources digest's start) lets a write clear the entries
    of other sources, which no process of this tree can use."""
    digest = hashlib.sha256(b"\0".join((environment_key(), name.encode(), *parts))).hexdigest()
    return folder / f"{name}-{sources_digest()[:12]}-{digest}.bin"


@functools.cache
def _clear_other_sources(folder: Path) -> None:
    """Removes the entries other hyv_jax sources wrote (once per folder and process): after an
    upgrade or an edit they are never read again, and each 13B program is tens of MB."""
    for entry in folder.glob("*.bin"):
        parts = entry.name.rsplit("-", 2)
        if len(parts) == 3 and parts[1] != sources_digest()[:12]:
            entry.unlink(missing_ok=True)


def _read(path: Path, what: str):
    """The unpickled entry, or None (missing; unreadable: warned, to be written again)."""
    if not path.exists():
        return None
    try:
        return pickle.loads(path.read_bytes())
    except Exception as error:  # noqa: BLE001 - a truncated or foreign entry is computed again
        warnings.warn(f"computing {what} again: cannot load {path} ({type(error).__name__}: {error})")
        return None


def _write(path: Path, data: bytes, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _clear_other_sources(path.parent)
        write_replacing(path, lambda temp: temp.write_bytes(data))
    except OSError as error:
        warnings.warn(f"cannot keep {what} in {path.parent} ({error.strerror}); it is computed again next run")


def persistent_value(name: str, inputs: Sequence, make: Callable[[], T]) -> T:
    """make(), a pure function of `inputs` and the hyv_jax sources, or the value a previous
    process stored for the same key (computed and stored when there is none)."""
    folder, key = cache_folder(), key_bytes(inputs)
    if folder is None or key is None:
        return make()
    path = entry_path(folder, name, key)
    stored = _read(path, name)
    if stored is not None:
        return stored[0]
    value = make()
    if (data := _pickled((value,))) is not None:
        _write(path, data, name)
    return value


def _platform(shardings: Sequence) -> str:
    """The platform of the first argument placed on a device, else JAX's default backend's."""
    for sharding in shardings:
        if isinstance(sharding, jax.sharding.Sharding):
            return next(iter(sharding.device_set)).platform
    return jax.default_backend()


class PersistentProgram:
    """`jax.jit(fn, static_argnums=...)` whose executables a later process loads without
    tracing or lowering. Call it like the jitted function; `lower` is the jitted one's. `fn`
    may read only its arguments, `bound` and module-level code (keyed through the sources):
    whatever else shapes the program (a model's graph, a policy, a plan) must be a static
    argument or in `bound` (values fn already holds, keyed without being hashed at each call:
    a denoising step's graph), or a later process would load a program traced from other
    values. Within a process a program is found by its arguments' signature and the context
    variables, as jax.jit finds its traces. `compiler_options` ({platform: XLA debug options},
    e.g. {"cpu": nn/causal_conv.CPU_COMPILER_OPTIONS}) go to every compile of it for arguments
    on that platform; a jaxlib that does not know one compiles without them, with a warning."""

    def __init__(self, fn: Callable, name: str, static_argnums: Sequence[int] = (),
                 compiler_options: Mapping[str, Mapping[str, str]] | None = None, bound: Sequence = ()):
        self.name = name
        self._static = tuple(static_argnums)
        self._bound = tuple(bound)
        self._jitted = jax.jit(fn, static_argnums=self._static)
        self._options = {platform: dict(options) for platform, options in (compiler_options or {}).items()}
        self._compiled: dict = {}  # (static arguments, signature, context) -> Compiled, or None: the plain jitted call

    def lower(self, *args) -> jax.stages.Lowered:
        return self._jitted.lower(*args)

    def __call__(self, *args):
        folder = cache_folder()
        if folder is None and not self._options:
            return self._jitted(*args)
        static = tuple(args[i] for i in self._static)
        dynamic = tuple(a for i, a in enumerate(args) if i not in self._static)
        call = (static, signature(dynamic), _context())
        if call not in self._compiled:
            self._compiled[call] = self._program(folder, args, static, call[1])
        compiled = self._compiled[call]
        return self._jitted(*args) if compiled is None else compiled(*dynamic)

    def _program(self, folder: Path | None, args: tuple, static: tuple, signature: tuple) -> jax.stages.Compiled | None:
        """The executable for a new signature: loaded or compiled and stored; compiled with the
        platform's options when it cannot be kept (no folder, an uncacheable static argument);
        None when neither applies."""
        platform = _platform(signature[2])
        options = sorted(self._options.get(platform, {}).items())
        key = None if folder is None else key_bytes((self._bound, static))
        if key is None:
            return self._compile(args, platform) if options else None
        path = entry_path(folder, self.name, key, _signature_text(signature).encode() + repr(options).encode())
        return self._load_or_compile(path, args, platform)

    def _compile(self, args: tuple, platform: str) -> jax.stages.Compiled:
        lowered = self._jitted.lower(*args)
        if options := self._options.get(platform):
            try:
                return lowered.compile(compiler_options=options)
            except jax.errors.JaxRuntimeError as error:  # an option this jaxlib lacks or names otherwise
                if "option" not in str(error):
                    raise
                warnings.warn(f"compiling {self.name} without {options}: {str(error).splitlines()[0]}")
                del self._options[platform]
        return lowered.compile()

    def _load_or_compile(self, path: Path, args: tuple, platform: str) -> jax.stages.Compiled:
        what = f"the compiled {self.name}"
        stored = _read(path, what)
        if stored is not None:
            try:
                serialized, in_tree, out_tree, device_ids = stored
                devices = {d.id: d for d in jax.devices()}
                return serialize_executable.deserialize_and_load(serialized, in_tree, out_tree,
                                                                 execution_devices=[devices[i] for i in device_ids])
            except Exception as error:  # noqa: BLE001 - e.g. an entry of another jaxlib build
                warnings.warn(f"compiling {self.name} again: cannot load {path} ({type(error).__name__}: {error})")
        # compiled afresh, not loaded from JAX's cache: on XLA:CPU an executable that was loaded
        # serializes without its kernels' code, and fails when run ("Function ... not found")
        with jax_config.enable_compilation_cache(False):
            compiled = self._compile(args, platform)
        # the devices it runs on, in its order (by default a loaded executable expects them all)
        device_ids = [d.id for d in compiled._executable.xla_executable.local_devices()]
        try:
            data = pickle.dumps((*serialize_executable.serialize(compiled), device_ids), protocol=5)
        except (ValueError, NotImplementedError, pickle.PicklingError, TypeError):
            return compiled  # e.g. constants captured in the program: kept for this process only
        _write(path, data, what)
        return compiled
