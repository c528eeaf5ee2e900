"""Reference-image preprocessing for HunyuanCustom's two image paths (host-side, OpenCV), as the
official data loader does it (hymm_sp/data_kits/video_dataset.py:129-151, data_tools.py:78-94).

- Reading: `cv2.imread`, which applies the EXIF orientation (a phone photo stored sideways comes
  out upright), then BGR -> RGB.
- `pad_image`: resized with its aspect kept to fit the target (width, height) by `cv2.resize`
  (bilinear, no antialiasing: OpenCV's exact pixels need OpenCV), then padded with white around it.
- VAE path: padded to the video's size, mapped to [-1, 1] as a one-frame video.
- LLaVA path: padded to 336 x 336 the same way (the torchvision Resize that follows is then a
  no-op), scaled to [0, 1] and normalised with the loader's CLIP mean/std.
"""

import cv2
import numpy as np

WHITE = (255, 255, 255)
# video_dataset.py:123-126 (the loader's constants; CLIP's own mean ends ...073)
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.4082107], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def load_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, EXIF orientation applied."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path}: missing or not an image OpenCV decodes; pass a PNG/JPEG/WebP file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def pad_to_size(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The image scaled to fit (width, height) with its aspect kept, centred on white
    (data_tools.py:78-94 `pad_image`, integer sizes truncated as there)."""
    image = _check_rgb(image)
    h, w = image.shape[:2]
    if width / w > height / h:  # height-bound
        new_h = height
        new_w = int(w / h * new_h)
    else:
        new_w = width
        new_h = int(h / w * new_w)
    if min(new_w, new_h) < 1:
        raise ValueError(f"a {w}x{h} image scaled to fit {width}x{height} is less than one pixel wide; crop it closer to "
                         "the subject")
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left, cv2.BORDER_CONSTANT,
                              value=WHITE)


def vae_reference(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(1, 1, height, width, 3) float32 in [-1, 1]: a one-frame video, channels-last."""
    return (pad_to_size(image, width, height).astype(np.float32) / 127.5 - 1.0)[None, None]


def clip_reference(image: np.ndarray, size: int = 336) -> np.ndarray:
    """(size, size, 3) float32 CLIP-normalised pixels of the image padded to a white square."""
    return (pad_to_size(image, size, size).astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD


def white_clip_reference(size: int = 336) -> np.ndarray:
    """The unconditional branch's image: plain white."""
    return clip_reference(np.full((size, size, 3), 255, np.uint8), size)
