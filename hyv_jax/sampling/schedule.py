"""The shifted flow-matching schedule: sigmas from 1 (noise) to 0 (data) in float32.

sigma = linspace(1, 0, steps + 1), shifted sigma' = s*sigma / (1 + (s-1)*sigma), timesteps =
sigma'[:-1] * 1000 (what the transformer sees). The model predicts v = noise - x0 on
x_sigma = sigma*noise + (1-sigma)*x0 ("flow-reverse" upstream), so the Euler step runs from 1 to 0.

Two float32 linspaces are in use and differ by an ulp at some steps (9 of 51 at 50 steps):
upstream's `torch.linspace` ("official": fused multiply-add from both ends) and diffusers'
`np.linspace` in float64 rounded to float32 ("diffusers"). Both are reproduced exactly.
"""

import dataclasses

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000
SPACINGS = ("official", "diffusers")


def linspace_1_to_0(n: int, spacing: str = "official") -> np.ndarray:
    """n float32 values from 1 to 0, rounded as the named implementation rounds them."""
    if spacing == "diffusers":
        return np.linspace(1.0, 0.0, n).astype(np.float32)
    if spacing != "official":
        raise ValueError(f"unknown sigma spacing {spacing!r}; choose one of {SPACINGS}")
    # torch's CPU kernel: float32 step, then fma(step, i, start) for the first half and
    # fma(-step, n-1-i, end) for the second; float64 holds the products exactly, so one rounding.
    step = np.float64(np.float32(np.float32(-1.0) / np.float32(n - 1)))
    i = np.arange(n, dtype=np.float64)
    return np.where(i < n // 2, (1.0 + step * i).astype(np.float32), (-step * (n - 1 - i)).astype(np.float32))


def shift_sigmas(sigmas: np.ndarray, shift: float) -> np.ndarray:
    sigmas = np.asarray(sigmas, np.float32)
    return (np.float32(shift) * sigmas / (np.float32(1.0) + np.float32(shift - 1.0) * sigmas)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FlowSchedule:
    """sigmas: (steps + 1,) float32 ending at 0; timesteps: (steps,) float32 = sigmas[:-1] * 1000."""

    sigmas: np.ndarray
    timesteps: np.ndarray

    @classmethod
    def create(cls, steps: int, shift: float, spacing: str = "official") -> "FlowSchedule":
        if steps < 1:
            raise ValueError(f"the number of denoising steps must be >= 1, got {steps}")
        if shift <= 0:
            raise ValueError(f"the flow shift must be > 0 (7.0 for the released model), got {shift}")
        sigmas = shift_sigmas(linspace_1_to_0(steps + 1, spacing), shift)
        return cls(sigmas, (sigmas[:-1] * np.float32(NUM_TRAIN_TIMESTEPS)).astype(np.float32))

    @property
    def steps(self) -> int:
        return len(self.timesteps)
