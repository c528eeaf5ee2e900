"""Output sizes as the official scripts settle them: one --video-size value means a square, and
height and width are rounded up to multiples of 16 (hyvideo/inference.py:357-366 `parse_size`,
:584-585 and hymm_sp/sample_inference.py:175-177 `align_to`). HunyuanCustom's editing mode
generates at the input video's own size, rounded the same way (the VAE's latent size
ceil(H / 8) times 8, hymm_sp/sample_batch.py:76-77, then aligned to 16), and at the largest 4k+1
frames its latents give: min(video, mask) frames n -> (ceil(n / 4) - 1) * 4 + 1 (:78)."""

import math

ALIGNMENT = 16


def align_to(value: int, alignment: int = ALIGNMENT) -> int:
    return int(math.ceil(value / alignment) * alignment)


def official_size(video_size) -> tuple[tuple[int, int], str | None]:
    """[size] or [height, width] -> ((height, width) rounded up to multiples of 16, a note saying
    what changed or None)."""
    sizes = [int(v) for v in video_size]
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise ValueError(f"--video-size takes one positive size (a square) or height and width, got {video_size}")
    height, width = sizes * 2 if len(sizes) == 1 else sizes
    rounded = (align_to(height), align_to(width))
    note = None if rounded == (height, width) else (
        f"note: {height}x{width} rounded up to {rounded[0]}x{rounded[1]} (multiples of {ALIGNMENT}, as upstream)")
    return rounded, note


def editing_frames(video_frames: int, mask_frames: int) -> int:
    """Frames an editing run produces (and reads from the front of both inputs)."""
    n = min(video_frames, mask_frames)
    if n < 1:
        raise ValueError(f"the input video ({video_frames} frames) and the mask video ({mask_frames}) need a frame each")
    return (n - 1) // 4 * 4 + 1
