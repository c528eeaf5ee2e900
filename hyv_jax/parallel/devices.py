"""What JAX runs on here, said in one line, and what to do when it is the CPU on a machine with
an accelerator (the usual cause: CPU-only jax installed instead of the CUDA or TPU build)."""

import glob
import os
import shutil
from collections import Counter

import jax

INSTALL = {
    "gpu": "pip install -e '.[cuda]'   (jax with its CUDA 13 plugin; '.[cuda12]' for drivers older than 580)",
    "tpu": "pip install -e '.[tpu]'",
}


def accelerator_present() -> str | None:
    """'gpu' or 'tpu' when the machine visibly has one (driver files), else None."""
    if os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi"):
        return "gpu"
    if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*") or os.environ.get("TPU_ACCELERATOR_TYPE"):
        return "tpu"
    return None


def device_summary() -> str:
    """e.g. 'backend gpu: 8 x NVIDIA H100 80GB HBM3 (process 0 of 1)'."""
    kinds = Counter(d.device_kind for d in jax.devices())
    listed = ", ".join(f"{n} x {kind}" for kind, n in kinds.items())
    return f"backend {jax.default_backend()}: {listed} (process {jax.process_index()} of {jax.process_count()})"


def cpu_fallback_warning() -> str | None:
    """A warning with the install command when JAX runs on the CPU but an accelerator is there."""
    present = accelerator_present()
    if jax.default_backend() != "cpu" or present is None:
        return None
    return (f"WARNING: this machine has a {present.upper()} but JAX runs on the CPU (a CPU-only jax is installed), so "
            f"everything will be very slow; install the {present.upper()} build: {INSTALL[present]}")
