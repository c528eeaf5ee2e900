"""mp4 and PNG writing through PyAV: decode back with the right frame count, size and content;
the same bytes for the same frames; never a lost, replaced, shared or partial file."""

import concurrent.futures
import errno
import os
from pathlib import Path

import av
import numpy as np
import pytest

from hyv_jax.io.atomic_file import MAX_NAME_BYTES, fit_name
from hyv_jax.io.video import FPS, keep_frames, read_video, write_image, write_video


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


def test_same_frames_give_the_same_bytes_on_any_number_of_cpus(tmp_path):
    """Before: x264 took its thread count from the CPUs the process may use (one run on 2 CPUs
    and one on 1 differed by up to 42 levels), and its macroblock-tree AVX-512 code gave other
    bytes from run to run even on one thread."""
    rng = np.random.default_rng(0)
    frames = np.clip(smooth_frames(17, 256, 192).astype(int) + rng.integers(-20, 20, (17, 256, 192, 3)), 0, 255).astype(np.uint8)
    audio = np.sin(np.linspace(0, 400, 16000)).astype(np.float32)
    cpus = os.sched_getaffinity(0)
    written = set()
    for i, allowed in enumerate([cpus, {min(cpus)}, cpus, {max(cpus)}, cpus, cpus]):
        os.sched_setaffinity(0, allowed)
        try:
            written.add(write_video(tmp_path / f"{i}.mp4", frames, audio=audio).read_bytes())
        finally:
            os.sched_setaffinity(0, cpus)
    assert len(written) == 1


def test_a_taken_name_is_never_replaced(tmp_path):
    a, b = smooth_frames(5, 32, 32), smooth_frames(5, 32, 32)[::-1]
    first = write_video(tmp_path / "v.mp4", a)
    kept = first.read_bytes()
    second = write_video(tmp_path / "v.mp4", b)
    assert (first.name, second.name) == ("v.mp4", "v_2.mp4") and first.read_bytes() == kept
    assert write_image(tmp_path / "v.mp4", a[0]).name == "v_3.mp4"


def test_writers_racing_for_one_name_each_get_their_own_file(tmp_path):
    clips = [smooth_frames(5, 32, 32) // (i + 1) for i in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda f: write_video(tmp_path / "same.mp4", f), clips))
    assert len(set(paths)) == 4 and sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)
    for path, frames in zip(paths, clips, strict=True):
        assert np.abs(read_video(path).astype(int) - frames).mean() < 3


def test_long_chinese_names_fit_in_255_bytes(tmp_path):
    prompt = "一只可爱的小猫在阳光明媚的草地上追逐蝴蝶，" * 6  # 132 characters, 396 bytes in UTF-8
    name = fit_name(prompt, ".mp4")
    assert len(name.encode()) <= MAX_NAME_BYTES and name.endswith(".mp4") and prompt.startswith(name[:-4])
    first = write_video(tmp_path / name, smooth_frames(5, 32, 32))
    second = write_video(tmp_path / name, smooth_frames(5, 32, 32))
    assert first.name == name and len(second.name.encode()) <= MAX_NAME_BYTES and second.name.endswith("_2.mp4")
    third = write_video(tmp_path / f"{prompt}.mp4", smooth_frames(5, 32, 32))  # the writer cuts a long name itself
    assert third.name.endswith("_3.mp4") and prompt.startswith(third.name[:-6])


def test_a_full_disk_leaves_no_file_behind(tmp_path, monkeypatch):
    real_open = av.open

    def open_on_full_disk(path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * 100)  # a part got written before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(av, "open", open_on_full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_video(tmp_path / "v.mp4", smooth_frames(5, 32, 32))
    with pytest.raises(OSError, match="No space left"):
        write_image(tmp_path / "v.png", smooth_frames(1, 32, 32)[0])
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(av, "open", real_open)


def test_frames_that_could_not_be_written_are_kept_and_write_later(tmp_path):
    frames = smooth_frames(5, 32, 32)
    audio = np.zeros(8000, np.float32)
    unwritable = tmp_path / "missing" / "folder"
    kept = keep_frames(frames, "clip", [unwritable, tmp_path], fps=25, audio=audio, sample_rate=16000)
    assert kept == tmp_path / "clip.npz"
    video = write_video(tmp_path / "later.mp4", **np.load(kept))
    assert read_video(video).shape == frames.shape
    assert keep_frames(frames, "clip", [unwritable]) is None
