"""Training metrics to the console (a progress bar) and to TensorBoard event files; MFU from
the compiled step's FLOPs and the device's peak."""

from pathlib import Path

import jax
from tqdm import tqdm

from hyv_jax.training.event_file import EventFileWriter

# Dense bf16 peak FLOP/s per device (vendor figures), by a substring of `device_kind`.
PEAK_FLOPS = (("H200", 989e12), ("H100", 989e12), ("A100", 312e12), ("v6", 918e12), ("v5p", 459e12),
              ("v5 lite", 197e12), ("v5e", 197e12), ("v4", 275e12))


def peak_flops(device: jax.Device) -> float | None:
    kind = device.device_kind
    return next((f for name, f in PEAK_FLOPS if name.lower() in kind.lower()), None)


class MetricsLog:
    def __init__(self, logdir: str | Path | None, total_steps: int, start_step: int = 0):
        self.events = EventFileWriter(logdir) if logdir else None
        self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True)
        self.peak = peak_flops(jax.devices()[0])

    def log(self, step: int, metrics: dict[str, float], *, seconds: float, samples: int, flops: float | None) -> dict[str, float]:
        """Adds throughput and MFU to `metrics`, shows and records them; returns the full dict."""
        out = dict(metrics, step_seconds=seconds, samples_per_second=samples / seconds)
        if flops and self.peak:  # `flops` is per device: the compiled SPMD program's cost
            out["mfu"] = flops / seconds / self.peak
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in out.items()})
        if self.events:
            self.events.scalars(step, out)
        return out

    def advance(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()
        if self.events:
            self.events.close()
