"""Videos and images on disk through PyAV: mp4 (H.264, yuv420p) for videos, PNG for a single
frame; and a reader that decodes either back to uint8 RGB frames."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 24  # upstream saves every video at 24 fps


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: int = FPS, crf: int = 18) -> Path:
    """Writes (T, H, W, 3) uint8 RGB frames as an H.264 mp4. yuv420p halves the chroma
    resolution, so height and width must be even (sampled videos are multiples of 16)."""
    frames = _check_frames(frames)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {height}x{width}; crop or pad by one pixel")
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_image(path: str | Path, frame: np.ndarray) -> Path:
    """Writes one (H, W, 3) uint8 RGB frame as a PNG."""
    frame = _check_frames(np.asarray(frame)[None])[0]
    path = Path(path)
    with av.open(str(path), mode="w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video (or the one of an image) as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    return np.stack(frames)
