"""mp4 and PNG writing through PyAV: decode back with the right frame count, size and content."""

import numpy as np
import pytest

from hyv_jax.io.video import FPS, read_video, write_image, write_video


def smooth_frames(t: int, h: int, w: int) -> np.ndarray:
    # gradients that move over time: H.264 at crf 18 keeps them within a few levels
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 4 + i * 8) % 256, (y * 4) % 256, np.full_like(x, 40 * i % 256)], -1) for i in range(t)]
    return np.array(frames, np.uint8)


def test_mp4_round_trip(tmp_path):
    frames = smooth_frames(9, 48, 64)
    path = write_video(tmp_path / "v.mp4", frames)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(int) - frames.astype(int))
    print(f"mp4 round trip: mean abs {err.mean():.2f}, 99th percentile {np.percentile(err, 99):.0f} levels")
    assert err.mean() < 3
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == FPS and stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"


def test_png_is_exact(tmp_path):
    frame = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    back = read_video(write_image(tmp_path / "f.png", frame))
    np.testing.assert_array_equal(back, frame[None])


def test_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="even sizes"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        write_image(tmp_path / "f.png", np.zeros((32, 32), np.uint8))
