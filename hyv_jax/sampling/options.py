"""What to sample: sizes, schedule, guidance, seeds. Defaults are upstream's sample_video.py;
configs carry them in their `sampling` section, and everything is checked before any model
loads."""

import dataclasses
import math
from collections.abc import Mapping

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT
from hyv_jax.sampling.noise import MAX_SEED, NOISE_DTYPES
from hyv_jax.sampling.schedule import SPACINGS

SIZE_MULTIPLE = 16  # the VAE's 8x times the transformer's 2x2 patches
# latent tokens of one video (T x H/16 x W/16): 8.8x the released 720x1280x129 (118,800). Far
# larger requests only exhaust host or device memory after minutes; refused before any allocation
MAX_TOKENS = 2**20


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    height: int = 720
    width: int = 1280
    frames: int = 129  # 4k + 1; 1 samples an image (image prompt template, PNG out)
    steps: int = 50
    flow_shift: float = 7.0
    embedded_guidance: float = 6.0  # input of guidance-distilled models, times 1000
    cfg_scale: float = 1.0  # true classifier-free guidance when > 1 (two predictions per step)
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    num_videos: int = 1
    seed: int = 0  # video i uses seed + i; 0..2^64-1
    noise_dtype: str = "float16"  # upstream draws its noise in half precision; diffusers in float32
    sigma_spacing: str = "official"  # see schedule.py
    vae_tiling: bool = True
    # First Block Cache threshold (sampling/first_block_cache.py): 0 off; about 0.05-0.1 skips
    # the later blocks on steps where the first block's output barely changed
    first_block_cache: float = 0.0

    def __post_init__(self):
        for name, flag in (("flow_shift", "--flow-shift"), ("embedded_guidance", "--embedded-cfg-scale"),
                           ("cfg_scale", "--cfg-scale"), ("first_block_cache", "--first-block-cache")):
            require_finite(f"{name} ({flag})", getattr(self, name))
        if not 0 <= self.seed or self.seed + self.num_videos - 1 > MAX_SEED:
            seeds = f"seed {self.seed}" if self.num_videos == 1 else f"seeds {self.seed}..{self.seed + self.num_videos - 1}"
            raise ValueError(f"{seeds} must lie in 0..{MAX_SEED} (64 bits)")
        for name in ("height", "width"):
            value = getattr(self, name)
            if value < SIZE_MULTIPLE or value % SIZE_MULTIPLE:
                below, above = max(value // SIZE_MULTIPLE, 1) * SIZE_MULTIPLE, (value // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE
                hint = f"try {below} or {above}" if SIZE_MULTIPLE < value else f"e.g. {SIZE_MULTIPLE}"
                raise ValueError(f"video {name} {value} must be a positive multiple of {SIZE_MULTIPLE} ({hint})")
        if self.frames < 1 or (self.frames - 1) % 4:
            below, above = (self.frames - 1) // 4 * 4 + 1, (self.frames + 2) // 4 * 4 + 1
            hint = f"try {below} or {above}" if self.frames > 1 else "e.g. 1, 5, ..., 129"
            raise ValueError(f"video length {self.frames} must be 4k + 1 frames ({hint})")
        tokens = ((self.frames - 1) // 4 + 1) * (self.height // SIZE_MULTIPLE) * (self.width // SIZE_MULTIPLE)
        if tokens > MAX_TOKENS:
            raise ValueError(f"{self.height}x{self.width}x{self.frames} frames is {tokens:,} latent tokens per video, more than "
                             f"{MAX_TOKENS:,} (8.8x the released model's largest, 720x1280x129); choose a smaller size or fewer frames")
        if self.steps < 1:
            raise ValueError(f"the number of inference steps must be >= 1, got {self.steps}")
        if self.flow_shift <= 0:
            raise ValueError(f"the flow shift must be > 0 (7.0 for the released model), got {self.flow_shift}")
        if self.cfg_scale < 1:
            raise ValueError(f"cfg scale {self.cfg_scale} must be >= 1 (1 turns true classifier-free guidance off)")
        if self.num_videos < 1:
            raise ValueError(f"the number of videos must be >= 1, got {self.num_videos}")
        if self.noise_dtype not in NOISE_DTYPES:
            raise ValueError(f"noise dtype {self.noise_dtype!r} must be one of {NOISE_DTYPES}")
        if self.first_block_cache < 0:
            raise ValueError(f"the first block cache threshold must be >= 0 (0 turns it off), got {self.first_block_cache}")
        if self.sigma_spacing not in SPACINGS:
            raise ValueError(f"sigma spacing {self.sigma_spacing!r} must be one of {SPACINGS}")

    @property
    def true_cfg(self) -> bool:
        return self.cfg_scale > 1

    @classmethod
    def from_mapping(cls, values: Mapping) -> "SamplingOptions":
        return from_mapping(cls, values, "sampling")


def require_finite(what: str, value) -> float:
    """A float option as float; NaN and infinity are refused (they sample black videos)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return number
