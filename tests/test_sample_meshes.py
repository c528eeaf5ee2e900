"""sample.py on the 8 simulated CPU devices of the test process: the official context-parallel
flags (--ring-degree 8; --ulysses-degree 2 --ring-degree 4), FSDP over all 8 devices, a
HunyuanCustom mode and the First Block Cache each write the frames of the one-device run (uint8,
at most one level apart: the mesh only reorders float32 sums); and so does a job of two processes
on loopback."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sample
from hyv_jax.io import video as video_io

PROMPT = "a red circle moving left"
ONE_DEVICE = ["--config.parallel.mesh.fsdp=1"]  # a mesh of size 1: the single-device path


def frames_written(tmp_path, argv) -> list[np.ndarray]:
    """Runs sample.main and returns the frames it wrote (mp4 is lossy: compare what went in)."""
    captured = []
    write = video_io.write_video

    def keep(path, frames, *args, **kwargs):
        captured.append(np.asarray(frames))
        return write(path, frames, *args, **kwargs)

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(video_io, "write_video", keep)
        written = sample.main([*argv, "--save-path", str(tmp_path)])
    assert len(written) == len(captured) and all(p.exists() for p in written)
    return captured


def assert_same_frames(name, ours, reference):
    for a, b in zip(ours, reference, strict=True):
        off = np.abs(a.astype(int) - b.astype(int))
        print(f"{name}: max uint8 difference {off.max()}, {np.count_nonzero(off)} of {off.size} values differ")
        assert off.max() <= 1 and np.count_nonzero(off) <= off.size * 1e-3


@pytest.fixture(scope="module")
def text_to_video_reference(tmp_path_factory):
    return frames_written(tmp_path_factory.mktemp("one"), ["--prompt", PROMPT, "--seed", "0", *ONE_DEVICE])


@pytest.mark.parametrize("flags, mesh", [
    (["--ring-degree", "8"], "context 8 x tensor 1, context strategy ring"),
    (["--ulysses-degree", "2", "--ring-degree", "4"], "context_ring 4 x context 2 x tensor 1, context strategy usp"),
    ([], "data 1 x fsdp 8 x context 1 x tensor 1, context strategy none"),
], ids=["ring8", "ulysses2-ring4", "fsdp8"])
def test_the_tiny_default_on_a_mesh_writes_the_one_device_frames(flags, mesh, text_to_video_reference, tmp_path, capsys):
    ours = frames_written(tmp_path, ["--prompt", PROMPT, "--seed", "0", *flags])
    assert mesh in capsys.readouterr().out
    assert_same_frames(" ".join(flags) or "fsdp 8", ours, text_to_video_reference)


def test_first_block_cache_with_cfg_on_a_mesh(tmp_path):
    # two videos and true CFG: a model batch of 4 split over data 2; the cache skips steps on both
    flags = ["--prompt", PROMPT, "--seed", "0", "--num-videos", "2", "--cfg-scale", "2", "--first-block-cache", "0.2",
             "--infer-steps", "6"]
    reference = frames_written(tmp_path / "one", [*flags, *ONE_DEVICE])
    ours = frames_written(tmp_path / "mesh", [*flags, "--ring-degree", "4", "--config.parallel.mesh.data=2"])
    assert_same_frames("first block cache, data 2 x ring 4", ours, reference)


def test_hunyuan_custom_on_a_mesh(tmp_path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30, 3), np.uint8)).save(tmp_path / "ref.png")
    flags = ["--ref-image", str(tmp_path / "ref.png"), "--video-size", "32", "48", "--video-length", "5", "--infer-steps", "2",
             "--seed", "3"]
    reference = frames_written(tmp_path / "one", [*flags, *ONE_DEVICE])
    ours = frames_written(tmp_path / "mesh", [*flags, "--ulysses-degree", "2", "--ring-degree", "4"])
    assert_same_frames("HunyuanCustom identity, ulysses 2 x ring 4", ours, reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_write_one_video_equal_to_one_process(text_to_video_reference, tmp_path):
    """Two JAX processes x 2 CPU devices on loopback (gloo), each running the same command with
    its process id: one video, written by process 0, with the one-device frames."""
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}"}
    command = [sys.executable, str(Path(__file__).parent / "sample_process.py"), "--prompt", PROMPT, "--seed", "0",
               "--save-path", str(tmp_path), "--compile-cache", "", "--ring-degree", "4",
               "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]
    processes = [subprocess.Popen([*command, "--process-id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    assert [p.returncode for p in processes] == [0, 0], "\n\n".join(outputs)
    assert "process 0 of 2" in outputs[0] and "saved" in outputs[0]
    assert "saved" not in outputs[1] and "denoising" not in outputs[1]  # process 1 neither writes nor shows progress
    videos = sorted(tmp_path.glob("*.mp4"))
    assert len(videos) == 1, videos
    assert_same_frames("2 processes x 2 devices, ring 4", [np.load(f"{videos[0]}.npy")], text_to_video_reference)
