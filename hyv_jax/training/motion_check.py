"""Does a generated clip show what its caption says? Colour and motion of the foreground.

The foreground is every pixel far from the clip's background colour (the per-channel median
of the first frame's border); its mean colour is matched to the nearest named colour and its
centroid track gives the direction (the named direction with the largest projection of the
first-to-last displacement, "none" when it moved less than `min_motion` of the frame size).
"""

import dataclasses

import numpy as np

from hyv_jax.training.procedural_scenes import COLORS, DIRECTIONS, parse_caption


@dataclasses.dataclass(frozen=True)
class MotionCheck:
    color: str
    direction: str
    displacement: tuple[float, float]  # (rows, columns) as fractions of the frame height/width
    color_ok: bool
    direction_ok: bool


def foreground(video: np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """(T, H, W) bool: pixels further than `threshold` (RGB distance) from the background."""
    v = video.astype(np.float32)
    first = v[0]
    border = np.concatenate([first[0], first[-1], first[:, 0], first[:, -1]])
    background = np.median(border, axis=0)
    return np.linalg.norm(v - background, axis=-1) > threshold


def check_clip(video: np.ndarray, prompt: str, *, min_motion: float = 0.1) -> MotionCheck:
    """video: (T, H, W, 3) uint8 (T >= 2)."""
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 2:
        raise ValueError(f"expected a (T>=2, H, W, 3) video, got shape {video.shape}")
    want_color, _, want_direction = parse_caption(prompt)
    mask = foreground(video)
    t, h, w = mask.shape
    if not mask.any():
        return MotionCheck("none", "none", (0.0, 0.0), False, False)
    mean_rgb = video[mask].astype(np.float32).mean(axis=0)
    color = min(COLORS, key=lambda c: float(np.linalg.norm(mean_rgb - np.array(COLORS[c]))))
    rows, cols = np.mgrid[0:h, 0:w]
    centroids = []
    for m in mask:
        if m.any():
            centroids.append((rows[m].mean() / h, cols[m].mean() / w))
    if len(centroids) < 2:
        return MotionCheck(color, "none", (0.0, 0.0), color == want_color, False)
    disp = np.array(centroids[-1]) - np.array(centroids[0])
    if np.linalg.norm(disp) < min_motion:
        direction = "none"
    else:
        direction = max(DIRECTIONS, key=lambda d: float(disp @ np.array(DIRECTIONS[d])))
    return MotionCheck(color, direction, (float(disp[0]), float(disp[1])), color == want_color, direction == want_direction)


def summarize(checks: list[MotionCheck]) -> dict[str, float]:
    n = max(len(checks), 1)
    return {"color_accuracy": sum(c.color_ok for c in checks) / n,
            "direction_accuracy": sum(c.direction_ok for c in checks) / n,
            "both_accuracy": sum(c.color_ok and c.direction_ok for c in checks) / n}
