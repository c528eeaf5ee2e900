"""Reference-image preprocessing for HunyuanCustom's two image paths (host-side, numpy/PIL).

- VAE path: the image is resized with its aspect ratio kept to fit the video's (width, height)
  and padded with white around it (upstream `pad_image`), then mapped to [-1, 1] as a one-frame
  video for the VAE. Upstream resizes with OpenCV's bilinear filter, here PIL's (which also
  antialiases when shrinking), so pixels may differ slightly.
- LLaVA path: padded to a white square (LLaVA's `expand2square`), resized so the short side is
  336 (bicubic), centre-cropped to 336, scaled to [0, 1] and normalised with CLIP's mean/std ->
  what `CLIPImageProcessor` gives.
"""

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def load_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image {path}: {e}; pass a PNG/JPEG/WebP file") from e


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def pad_to_size(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image scaled to fit (width, height) with its aspect kept, centred on white."""
    image = _check_rgb(image)
    h, w = image.shape[:2]
    if width / w > height / h:  # height-bound
        new_h = height
        new_w = int(w / h * new_h)
    else:
        new_w = width
        new_h = int(h / w * new_w)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))
    out = np.full((height, width, 3), 255, np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def vae_reference(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(1, 1, height, width, 3) float32 in [-1, 1]: a one-frame video, channels-last."""
    return (pad_to_size(image, width, height).astype(np.float32) / 127.5 - 1.0)[None, None]


def clip_reference(image: np.ndarray, size: int = 336) -> np.ndarray:
    """(size, size, 3) float32 CLIP-normalised pixels of the white-square-padded image."""
    image = _check_rgb(image)
    h, w = image.shape[:2]
    side = max(h, w)
    square = np.full((side, side, 3), 255, np.uint8)
    square[(side - h) // 2:(side - h) // 2 + h, (side - w) // 2:(side - w) // 2 + w] = image
    resized = np.asarray(Image.fromarray(square).resize((size, size), Image.BICUBIC), np.float32)
    return (resized / 255.0 - CLIP_MEAN) / CLIP_STD


def white_clip_reference(size: int = 336) -> np.ndarray:
    """The unconditional branch's image: plain white."""
    return clip_reference(np.full((size, size, 3), 255, np.uint8), size)
