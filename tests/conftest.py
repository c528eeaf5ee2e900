import os
import sys
from pathlib import Path

# Before jax is imported: CPU, with 8 simulated devices for the sharding tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's cheapest CPU code generation: the suite's programs are small and compiling them is most
# of its time (bench/ measures speed, never the tests); the arithmetic is the same IEEE
# arithmetic (no fast math either way), and subprocesses inherit the flags.
for flag in ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0",
             "--xla_llvm_disable_expensive_passes=true"):
    if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
# No persistent compilation cache in-process: tests must not write to the home folder
# (tests/test_compilation_cache.py turns it on in subprocesses).
os.environ["HYV_JAX_COMPILE_CACHE"] = ""
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))


def pytest_collection_modifyitems(items):
    """The one xdist group (tests/training/test_multiprocess_training.py, minutes of serial
    multi-process runs on one worker) first: with --dist loadgroup the other worker then takes
    the rest meanwhile, instead of idling while the group ends the run."""
    items.sort(key=lambda item: item.get_closest_marker("xdist_group") is None)
