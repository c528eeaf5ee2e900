import os
import sys
from pathlib import Path

# Before jax is imported: CPU, with 8 simulated devices for the sharding tests.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# No persistent compilation cache in-process: tests must not write to the home folder
# (tests/test_compilation_cache.py turns it on in subprocesses).
os.environ["HYV_JAX_COMPILE_CACHE"] = ""
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
