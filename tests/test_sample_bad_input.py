"""sample.py refuses what would waste the run or lose its output, with one line, and never
loses a sampled video: absurd sizes, non-finite options, 64-bit seeds, images too large to
decode, audio too short to matter, runaway mask kernels, flags that do nothing, running out of
memory, a write that fails. The plan tests load no model; the main tests replace the pipeline."""

import errno

import jax
import numpy as np
import pytest
import soundfile
from helpers import png_header_only, run_cli
from PIL import Image

import sample
from hyv_jax.io import video as video_io
from hyv_jax.io.video import read_video, write_video
from hyv_jax.sampling.pipeline import TextToVideoPipeline, Videos

CHINESE = "一只可爱的小猫在阳光明媚的草地上追逐蝴蝶，" * 6  # 132 characters, 396 bytes of UTF-8


def fails(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.plan(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.splitlines()) == 1, err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(d / "ref.png")
    png_header_only(d / "huge.png", 20000, 20000)
    soundfile.write(d / "6ms.wav", np.zeros(96, np.float32), 16000)
    soundfile.write(d / "200ms.wav", np.zeros(3200, np.float32), 16000)
    write_video(d / "input.mp4", np.zeros((5, 32, 48, 3), np.uint8))
    write_video(d / "mask.mp4", np.full((5, 32, 48, 3), 255, np.uint8))
    return d


@pytest.mark.parametrize("argv, message", [
    (["--video-size", "100000", "100000"], "100000x100000x9 frames is 117,187,500 latent tokens per video, more than 1,048,576"),
    (["--video-size", "0", "64"], "--video-size takes one positive size (a square) or height and width, got [0, 64]"),
    (["--flow-shift", "nan"], "flow_shift (--flow-shift) must be a finite number, got nan"),
    (["--embedded-cfg-scale", "inf"], "embedded_guidance (--embedded-cfg-scale) must be a finite number, got inf"),
    (["--cfg-scale", "nan"], "cfg_scale (--cfg-scale) must be a finite number"),
    (["--seed", str(2**64)], f"seed {2**64} must lie in 0..{2**64 - 1} (64 bits)"),
    (["--seed", str(2**64 - 1), "--num-videos", "2"], "seeds 18446744073709551615..18446744073709551616 must lie in"),
])
def test_bad_options_are_refused_before_loading(argv, message, capsys, tmp_path):
    fails(["--save-path", str(tmp_path), "--config", "configs/tiny.py"] + argv, message, capsys)


def test_the_largest_seed_is_accepted(tmp_path):
    assert sample.plan(["--save-path", str(tmp_path), "--config", "configs/tiny.py", "--seed", str(2**64 - 1)]).options.seed == 2**64 - 1


def test_a_negative_prompt_without_true_cfg_is_named_unused(tmp_path):
    base = ["--save-path", str(tmp_path), "--config", "configs/tiny.py", "--neg-prompt", "blurry"]
    assert sample.plan(base).notes == ("--neg-prompt is unused: the negative prompt only enters with true CFG, "
                                       "--cfg-scale > 1 (now 1.0)",)
    assert sample.plan(base + ["--cfg-scale", "2"]).notes == ()


@pytest.mark.parametrize("extra, message", [
    (["--ref-image", "{d}/huge.png"], "--ref-image {d}/huge.png is more than 178,956,970 pixels; at most 67,108,864 pixels"),
    (["--ref-image", "{d}/ref.png", "--audio-strength", "nan"], "--audio-strength must be a finite number, got nan"),
    (["--ref-image", "{d}/ref.png", "--input-audio", "{d}/6ms.wav", "--config.transformer.audio_condition=True"],
     "--input-audio {d}/6ms.wav lasts 6 ms, less than one video frame (40 ms at 25 fps): it would drive nothing"),
    (["--ref-image", "{d}/ref.png", "--input-video", "{d}/input.mp4", "--mask-video", "{d}/mask.mp4", "--expand-scale", "100000",
      "--config.transformer.video_condition=True"], "--expand-scale 100000 is a kernel larger than the video (32x48): pass at most 48"),
])
def test_bad_custom_inputs_are_refused_before_decoding(extra, message, files, capsys, tmp_path):
    fails(["--save-path", str(tmp_path), "--video-size", "32", "48"] + [a.format(d=files) for a in extra],
          message.format(d=files), capsys)


def test_audio_shorter_than_the_video_is_named(files, tmp_path):
    p = sample.plan(["--save-path", str(tmp_path), "--video-size", "32", "48", "--video-length", "9", "--ref-image",
                     str(files / "ref.png"), "--input-audio", str(files / "200ms.wav"), "--config.transformer.audio_condition=True"])
    assert p.notes == ("--input-audio lasts 0.20 s: it drives the first 5 of 9 frames (25 fps), the rest get no audio, as upstream",)


class FakePipeline:
    """Stands in for the loaded pipeline: returns given frames, or raises."""

    def __init__(self, result):
        self.result = result

    def __call__(self, prompt, options, progress=True):
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def run_main(argv, capsys):
    return run_cli(sample.main, argv, "sample.py", capsys)


def frames_for(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 9, 32, 32, 3), np.uint8)


def test_running_out_of_device_memory_gives_advice(monkeypatch, capsys, tmp_path):
    """Before: 13B sizes on the tiny model ended in XLA's RESOURCE_EXHAUSTED traceback."""
    error = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1254130221056 bytes.")
    monkeypatch.setattr(TextToVideoPipeline, "from_config", classmethod(lambda cls, *a, **k: FakePipeline(error)))
    code, out = run_main(["--config", "configs/tiny.py", "--save-path", str(tmp_path), "--compile-cache", "",
                          "--video-size", "720", "1280", "--video-length", "129"], capsys)
    assert code == 1 and out.err.splitlines()[-1] == (
        "sample.py: error: out of memory sampling 1 video(s) of 720x1280x129 with configs/tiny.py (RESOURCE_EXHAUSTED: Out of "
        "memory while trying to allocate 1254130221056 bytes.); see the plan with --dry-run; use --use-fp8 and/or --use-cpu-offload, "
        "a smaller --video-size or --video-length, fewer --num-videos, --precision bf16, or split the video over more devices (--ulysses-degree, --ring-degree)")


def test_long_chinese_prompts_and_runs_in_the_same_second_each_keep_their_video(monkeypatch, capsys, tmp_path):
    """Before: the name kept 100 characters (over 255 bytes) and the write failed after sampling;
    two runs in one second with one seed and prompts differing in punctuation wrote one path."""
    monkeypatch.setattr(sample.time, "strftime", lambda fmt: "20260101-000000")
    written = []
    for prompt, seed in ((CHINESE, 3), (CHINESE + "!", 3)):
        monkeypatch.setattr(TextToVideoPipeline, "from_config",
                            classmethod(lambda cls, *a, s=seed, **k: FakePipeline(Videos(frames_for(1, s), None, [s], 2))))
        code, out = run_main(["--config", "configs/tiny.py", "--save-path", str(tmp_path), "--compile-cache", "",
                              "--prompt", prompt, "--seed", str(seed), "--infer-steps", "2"], capsys)
        assert code == 0, out.err
        written.append(out.out.splitlines()[-1].removeprefix("saved "))
    assert written[0] != written[1] and sorted(p.name for p in tmp_path.iterdir()) == sorted(p.split("/")[-1] for p in written)
    assert all(len(p.split("/")[-1].encode()) <= 255 for p in written)


def test_a_failed_write_keeps_the_frames_and_says_where(monkeypatch, capsys, tmp_path):
    """Before: a full disk lost the sampled video and left a 0-byte mp4."""
    frames = frames_for(2)
    monkeypatch.setattr(TextToVideoPipeline, "from_config", classmethod(lambda cls, *a, **k: FakePipeline(Videos(frames, None, [5, 6], 2))))

    def full_disk(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video_io, "write_video", full_disk)
    code, out = run_main(["--config", "configs/tiny.py", "--save-path", str(tmp_path), "--compile-cache", "",
                          "--num-videos", "2", "--seed", "5", "--infer-steps", "2"], capsys)
    line = out.err.splitlines()[-1]
    assert code == 1 and line.startswith(f"sample.py: error: could not write video 1 of 2 to {tmp_path} (No space left on device); "
                                         f"the frames are kept in {tmp_path}/"), line
    kept = sorted(tmp_path.glob("*.npz"))
    assert len(kept) == 2 and not list(tmp_path.glob("*.mp4"))
    monkeypatch.undo()
    for path, expected in zip(kept, frames, strict=True):
        np.testing.assert_array_equal(np.load(path)["frames"], expected)
        assert int(np.load(path)["fps"]) == 24
        assert read_video(write_video(tmp_path / "later.mp4", **np.load(path))).shape == expected.shape
