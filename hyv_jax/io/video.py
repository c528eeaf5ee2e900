"""Videos and images on disk through PyAV: mp4 (H.264, yuv420p) for videos, PNG for a single
frame; and a reader that decodes either back to uint8 RGB frames.

Writers never replace a file: each encodes into a temporary file in the target folder and
takes the target name, or a numbered variant when that name is taken, only once complete
(hyv_jax.io.atomic_file).

The same frames give the same mp4 bytes on a machine: x264 runs with a fixed thread count (it
would take one from the CPUs the process may use, and its output depends on it) and without
macroblock-tree rate control (its AVX-512 code gave different bytes from run to run, even on one
thread: pixels up to 42 levels apart). Without it, files at crf 18 are about 1.3-1.9x larger and
0.5 dB better. Another CPU family may still give other bytes (x264 picks SIMD code per CPU)."""

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hyv_jax.io.atomic_file import fit_name, write_new

FPS = 24  # upstream saves every video at 24 fps
ENCODER_THREADS = 8  # fixed, so the bytes do not depend on the CPUs (x264 caps it by frame height)
X264_PARAMS = "mbtree=0"  # deterministic (module doc)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: int = FPS, crf: int = 18, *, audio: np.ndarray | None = None,
                sample_rate: int = 16000) -> Path:
    """Writes (T, H, W, 3) uint8 RGB frames as an H.264 mp4 at `path`, or at `STEM_2.mp4`...
    if that name is taken; returns the path written. yuv420p halves the chroma resolution, so
    height and width must be even (sampled videos are multiples of 16). audio: mono float
    samples in [-1, 1] at `sample_rate`, muxed as AAC, cut to the video's length."""
    frames = _check_frames(frames)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {height}x{width}; crop or pad by one pixel")
    fps, sample_rate = int(fps), int(sample_rate)

    def encode(temp: Path) -> None:
        with av.open(str(temp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": str(crf), "x264-params": X264_PARAMS}
            stream.codec_context.thread_count = ENCODER_THREADS
            # every stream exists before the first packet (the header is written then)
            sound = container.add_stream("aac", rate=sample_rate, layout="mono") if audio is not None else None
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
            if sound is not None:
                _mux_audio(container, sound, np.asarray(audio, np.float32)[: len(frames) * sample_rate // fps], sample_rate)

    return write_new(path, encode)


def _mux_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    if samples.ndim != 1 or not samples.size:
        raise ValueError(f"audio must be non-empty mono samples (N,), got {samples.shape}")
    frame = av.AudioFrame.from_ndarray(np.clip(samples, -1, 1)[None], format="fltp", layout="mono")
    frame.sample_rate = sample_rate
    container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_image(path: str | Path, frame: np.ndarray) -> Path:
    """Writes one (H, W, 3) uint8 RGB frame as a PNG at `path` (or a numbered variant when the
    name is taken); returns the path written."""
    frame = _check_frames(np.asarray(frame)[None])[0]

    def encode(temp: Path) -> None:
        with av.open(str(temp), mode="w", format="image2", options={"update": "1"}) as container:
            stream = container.add_stream("png")
            stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], "rgb24"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())

    return write_new(path, encode)


def keep_frames(frames: np.ndarray, name: str, folders: Sequence[str | Path], **video) -> Path | None:
    """Saves frames a video writer could not write as `name.npz` (keys: frames and the given
    keyword arguments of write_video, so `write_video(path, **np.load(kept))` writes the video
    later) in the first of `folders` that takes it; None when none does."""
    arrays = {"frames": np.asarray(frames), **{k: np.asarray(v) for k, v in video.items() if v is not None}}

    def save(temp: Path) -> None:
        with open(temp, "wb") as f:
            np.savez(f, **arrays)

    for folder in folders:
        try:
            return write_new(Path(folder) / fit_name(name, ".npz"), save)
        except OSError:
            continue
    return None


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video (or the one of an image) as (T, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path} holds no video frames")
    return np.stack(frames)
