"""Mask-video preprocessing of HunyuanCustom's editing mode (host-side, OpenCV), as the official
data loader does it (hymm_sp/data_kits/video_dataset.py:194-213):

each mask frame is resized to the video size (`cv2.resize`, bilinear), then turned grey with
`cv2.COLOR_BGR2GRAY` although the frames are RGB (decord reads RGB), so red gets blue's weight
0.114 and blue red's 0.299: the official quirk, kept; then grown by `cv2.dilate` with OpenCV's
elliptic element of side |expand_scale|, 3 iterations (`cv2.erode` for a negative scale; even
sides anchor off-centre as OpenCV does), and thresholded at 127.5. The masked video keeps the
pixels where the mask is 0.
"""

import cv2
import numpy as np

ITERATIONS = 3


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 3 and frame.shape[-1] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # on RGB frames: the official channel order quirk
    return frame.reshape(frame.shape[:2])


def process_mask(frames: np.ndarray, height: int, width: int, expand_scale: int) -> np.ndarray:
    """frames (T, h, w[, 1 or 3]) uint8 RGB -> (T, height, width) bool, True inside the (grown) mask."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] in (1, 3))):
        raise ValueError(f"mask video must be (T, H, W), (T, H, W, 1) or (T, H, W, 3) uint8 frames, got {frames.shape} "
                         f"{frames.dtype}")
    expand_scale = int(expand_scale)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(expand_scale),) * 2) if expand_scale else None
    grow = cv2.dilate if expand_scale > 0 else cv2.erode
    out = []
    for frame in frames:
        grey = _grey(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR))
        if kernel is not None:
            grey = grow(grey, kernel, iterations=ITERATIONS)
        out.append(grey > 127.5)
    return np.stack(out)


def masked_video(video: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """video (T, H, W, 3) with the masked pixels set to 0; mask (T, H, W) bool."""
    video = np.asarray(video)
    if video.shape[:3] != mask.shape:
        raise ValueError(f"the mask video {mask.shape} (T, H, W) must match the input video {video.shape[:3]}: same frame "
                         "count and size (resize both to the generation size first)")
    return video * (~mask)[..., None].astype(video.dtype)
