"""What Hunyuan-DiT samples: size, solver, guidance, seeds. Defaults are upstream's
sample_t2i.py (hydit/config.py); configs carry them in their `sampling` section, and
everything is checked before any model loads."""

import dataclasses
from collections.abc import Mapping

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.sampling.ddpm_solvers import SOLVERS, NoiseSchedule
from hyv_jax.sampling.image_resolution import image_size

# hydit/constants.py:NEGATIVE_PROMPT, used whenever --negative is empty (hydit/inference.py:predict)
NEGATIVE_PROMPT = "错误的眼睛，糟糕的人脸，毁容，糟糕的艺术，变形，多余的肢体，模糊的颜色，模糊，重复，病态，残缺，"


@dataclasses.dataclass(frozen=True)
class ImageSamplingOptions:
    height: int = 1024
    width: int = 1024
    steps: int = 100
    solver: str = "ddpm"
    cfg_scale: float = 6.0  # classifier-free guidance when > 1 (two predictions per step)
    guidance_rescale: float = 0.0
    negative_prompt: str = NEGATIVE_PROMPT  # "" means this default too, as upstream
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.02  # 0.03 for v1.0/v1.1 weights
    prediction_type: str = "v_prediction"
    size_cond: tuple[int, ...] = ()  # v1.0/v1.1: the "original size" of image_meta_size (upstream --size-cond)
    resolution_binning: bool = False
    seed: int = 42  # image i uses seed + i
    num_images: int = 1

    def __post_init__(self):
        object.__setattr__(self, "size_cond", tuple(self.size_cond))
        object.__setattr__(self, "negative_prompt", self.negative_prompt or NEGATIVE_PROMPT)
        image_size(self.height, self.width)
        if self.steps < 1 or self.steps > 1000:
            raise ValueError(f"the number of inference steps must be in 1..1000, got {self.steps}")
        if self.solver not in SOLVERS:
            raise ValueError(f"unknown sampler {self.solver!r}; choose one of {SOLVERS}")
        if self.cfg_scale < 1:
            raise ValueError(f"cfg scale {self.cfg_scale} must be >= 1 (1 turns classifier-free guidance off)")
        if not 0 <= self.guidance_rescale <= 1:
            raise ValueError(f"guidance rescale must be in [0, 1], got {self.guidance_rescale}")
        if len(self.size_cond) not in (0, 2):
            raise ValueError(f"size_cond takes two values (like --size-cond 1024 1024), got {self.size_cond}")
        if self.num_images < 1:
            raise ValueError(f"the number of images must be >= 1, got {self.num_images}")
        self.noise_schedule()

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) that will be sampled (aligned to 16, or binned)."""
        return image_size(self.height, self.width, self.resolution_binning)

    def noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule(self.beta_schedule, self.beta_start, self.beta_end, self.prediction_type)

    @classmethod
    def from_mapping(cls, values: Mapping) -> "ImageSamplingOptions":
        return from_mapping(cls, values, "sampling")
