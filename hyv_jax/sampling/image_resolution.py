"""Image sizes for Hunyuan-DiT: upstream aligns the requested size down to multiples of 16
(hydit/inference.py:predict, torch/fa modes); with binning, to the closest of the released
model's resolution buckets (the TensorRT path's idea, with diffusers' bucket table: first the
closest aspect ratio, then the closest area)."""

import numpy as np

SIZE_MULTIPLE = 16  # the VAE's 8 times the 2x2 patches
# (width, height) per aspect ratio 1:1, 4:3, 3:4, 16:9, 9:16 (pipeline_hunyuandit.py:STANDARD_SHAPE)
RATIOS = (1.0, 4.0 / 3.0, 3.0 / 4.0, 16.0 / 9.0, 9.0 / 16.0)
BUCKETS = (((1024, 1024), (1280, 1280)), ((1024, 768), (1152, 864), (1280, 960)), ((768, 1024), (864, 1152), (960, 1280)),
           ((1280, 768),), ((768, 1280),))


def image_size(height: int, width: int, binning: bool = False) -> tuple[int, int]:
    """(height, width) to sample for a requested size."""
    if height < SIZE_MULTIPLE or width < SIZE_MULTIPLE:
        raise ValueError(f"image sizes must be at least {SIZE_MULTIPLE} pixels, got {height}x{width}")
    height, width = height // SIZE_MULTIPLE * SIZE_MULTIPLE, width // SIZE_MULTIPLE * SIZE_MULTIPLE
    if not binning or any((width, height) in shapes for shapes in BUCKETS):
        return height, width
    shapes = BUCKETS[int(np.argmin(np.abs(np.array(RATIOS) - width / height)))]
    width, height = shapes[int(np.argmin([abs(w * h - width * height) for w, h in shapes]))]
    return height, width
