"""A jax.profiler trace of chosen training steps (`train.py --profile_steps N:M`), for
TensorBoard's profile tab or Perfetto."""

from pathlib import Path

import jax


class StepProfiler:
    """Traces steps `first`..`last` (1-based, inclusive) into `directory`/process_<i>/ (each
    process traces its own devices)."""

    def __init__(self, first: int, last: int, directory: str | Path):
        if not 1 <= first <= last:
            raise ValueError(f"profile steps {first}:{last}: need 1 <= N <= M")
        self.first, self.last = first, last
        self.directory = Path(directory)
        self.active = False

    @classmethod
    def parse(cls, spec: str, directory: str | Path) -> "StepProfiler":
        """From 'N:M' (or 'N' for one step)."""
        first, _, last = spec.partition(":")
        try:
            return cls(int(first), int(last or first), directory)
        except ValueError as e:
            raise ValueError(f"--profile_steps {spec!r}: expected N:M, the first and last step to trace ({e})") from None

    def before(self, step: int) -> None:
        """Call before running step `step`."""
        if not self.active and self.first <= step <= self.last:
            # the process index is known only once the job has joined (parse() may come first)
            directory = self.directory / f"process_{jax.process_index()}"
            directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(directory))
            self.active = True

    def after(self, step: int, state) -> None:
        """Call after step `step` with the train state (its computation is waited for)."""
        if self.active and step >= self.last:
            jax.block_until_ready(state)
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
