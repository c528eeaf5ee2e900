"""Mask-video preprocessing of HunyuanCustom's editing mode (host-side, numpy/scipy/PIL).

Each mask frame is resized to the video size, turned grayscale (ITU-R 601 weights), grown by a
grey dilation with an elliptic kernel of side `expand_scale` applied 3 times (a negative value
erodes instead), and thresholded at 127.5. The masked video keeps the pixels where the mask is 0.
Upstream does these steps with OpenCV; the kernel here is built the way OpenCV's
`getStructuringElement(MORPH_ELLIPSE)` builds it, but resizing uses PIL's bilinear filter.
"""

import numpy as np
from PIL import Image
from scipy import ndimage

ITERATIONS = 3


def ellipse_kernel(size: int) -> np.ndarray:
    """(size, size) bool: OpenCV's MORPH_ELLIPSE element (row spans rounded to nearest)."""
    r = c = size // 2
    kernel = np.zeros((size, size), bool)
    for i in range(size):
        dy = i - r
        if abs(dy) <= r and r:
            dx = int(np.rint(c * np.sqrt((r * r - dy * dy) / (r * r))))
            kernel[i, max(c - dx, 0):min(c + dx + 1, size)] = True
    if not r:
        kernel[:] = True
    return kernel


def _gray(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame.astype(np.float32)
    return frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def process_mask(frames: np.ndarray, height: int, width: int, expand_scale: int) -> np.ndarray:
    """frames (T, h, w[, C]) uint8 -> (T, height, width) bool, True inside the (grown) mask."""
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.dtype != np.uint8:
        raise ValueError(f"mask video must be (T, H, W) or (T, H, W, C) uint8 frames, got {frames.shape} {frames.dtype}")
    out = []
    for frame in frames:
        gray = np.rint(_gray(frame)).clip(0, 255).astype(np.uint8)
        gray = np.asarray(Image.fromarray(gray).resize((width, height), Image.BILINEAR))
        if expand_scale:
            footprint = ellipse_kernel(abs(int(expand_scale)))
            grow = ndimage.grey_dilation if expand_scale > 0 else ndimage.grey_erosion
            for _ in range(ITERATIONS):
                gray = grow(gray, footprint=footprint, mode="nearest")
        out.append(gray > 127.5)
    return np.stack(out)


def masked_video(video: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """video (T, H, W, 3) with the masked pixels set to 0; mask (T, H, W) bool."""
    video = np.asarray(video)
    if video.shape[:3] != mask.shape:
        raise ValueError(f"the mask video {mask.shape} (T, H, W) must match the input video {video.shape[:3]}: same frame "
                         "count and size (resize both to the generation size first)")
    return video * (~mask)[..., None].astype(video.dtype)
