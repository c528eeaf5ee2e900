"""sample.py's HunyuanCustom modes end to end on configs/tiny_custom.py with random weights
(identity, audio-driven, editing): an mp4 at 25 fps that decodes back, with the input audio
muxed in; and the bad inputs that must fail before any model work."""

import re

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

import sample
from hyv_jax.io.video import read_video, write_video

SIZE = ["--video-size", "32", "48", "--infer-steps", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("custom_inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), np.uint8)).save(d / "ref.png")
    soundfile.write(d / "speech.wav", (0.3 * np.sin(np.arange(8000) * 0.05)).astype(np.float32), 22050)
    write_video(d / "input.mp4", rng.integers(0, 256, (5, 32, 48, 3), np.uint8))
    mask = np.zeros((5, 32, 48, 3), np.uint8)
    mask[:, 8:24, 12:36] = 255
    write_video(d / "mask.mp4", mask)
    write_video(d / "mask9.mp4", np.zeros((9, 32, 48, 3), np.uint8))
    write_video(d / "input6.mp4", np.zeros((6, 32, 48, 3), np.uint8))
    write_video(d / "native.mp4", rng.integers(0, 256, (7, 40, 56, 3), np.uint8))
    (d / "broken.png").write_bytes(b"not an image")
    (d / "broken.wav").write_bytes(b"not audio")
    return d


def _streams(path):
    with av.open(str(path)) as container:
        return {s.type: s for s in container.streams}, float(container.streams.video[0].average_rate)


@pytest.mark.parametrize("mode", ["identity", "audio", "editing"])
def test_mode_writes_a_video(mode, files, tmp_path, capsys):
    args = ["--ref-image", str(files / "ref.png"), "--save-path", str(tmp_path), *SIZE]
    if mode == "audio":
        args += ["--input-audio", str(files / "speech.wav"), "--audio-strength", "0.8", "--video-length", "5"]
    elif mode == "editing":
        args += ["--input-video", str(files / "input.mp4"), "--mask-video", str(files / "mask.mp4"), "--expand-scale", "3"]
    else:
        args += ["--video-length", "5"]
    (written,) = sample.main(args)
    out = capsys.readouterr().out
    assert "configs/tiny_custom.py" in out and "cfg 7.5" in out
    if mode != "editing":
        assert "shift 13.0" in out
    assert read_video(written).shape == (5, 32, 48, 3)
    streams, fps = _streams(written)
    assert fps == 25
    assert ("audio" in streams) == (mode == "audio")


def test_editing_at_the_input_videos_size_and_frames(files, tmp_path, capsys):
    """min(video, mask) frames read, the largest 4k+1 produced, the size rounded up to 16
    (hymm_sp/data_kits/video_dataset.py:189-191, sample_batch.py:76-78); --video-size overrides."""
    base = ["--ref-image", str(files / "ref.png"), "--save-path", str(tmp_path), "--infer-steps", "1"]
    p = sample.plan([*base, "--input-video", str(files / "native.mp4"), "--mask-video", str(files / "mask9.mp4")])
    assert "40x56 rounded up to 48x64 (multiples of 16, as upstream): the input video's size" in capsys.readouterr().out
    o = p.options
    assert (o.frames, o.height, o.width) == (5, 48, 64)
    assert p.custom.video.shape == (5, 48, 64, 3) and p.custom.mask.shape == (5, 48, 64)
    p = sample.plan([*base, "--input-video", str(files / "input6.mp4"), "--mask-video", str(files / "mask9.mp4")])
    assert (p.options.frames, p.options.height, p.options.width) == (5, 32, 48)
    p = sample.plan([*base, "--input-video", str(files / "native.mp4"), "--mask-video", str(files / "mask.mp4"),
                     "--video-size", "32"])
    assert (p.options.frames, p.options.height, p.options.width) == (5, 32, 32) and p.custom.video.shape == (5, 32, 32, 3)


def test_precision_flag_covers_llava_and_the_negative_prompt_follows_the_mode(files, tmp_path):
    from configs.hunyuan_custom import AUDIO_NEGATIVE_PROMPT, NEGATIVE_PROMPT

    base = ["--ref-image", str(files / "ref.png"), "--save-path", str(tmp_path), *SIZE, "--video-length", "5"]
    p = sample.plan([*base, "--text-encoder-precision", "fp16"])
    assert p.config.vision.dtype == p.config.text_encoder.llm.dtype == "float16" and p.options.noise_dtype == "float16"
    assert p.options.negative_prompt == NEGATIVE_PROMPT  # the identity and editing scripts'
    audio = sample.plan([*base, "--input-audio", str(files / "speech.wav")])
    assert audio.options.negative_prompt == AUDIO_NEGATIVE_PROMPT
    assert sample.plan([*base, "--input-audio", str(files / "speech.wav"), "--neg-prompt", "x"]).options.negative_prompt == "x"


@pytest.mark.parametrize("extra, message", [
    (["--ref-image", "{d}/broken.png"], "cannot read image"),
    (["--ref-image", "{d}/ref.png", "--input-audio", "{d}/broken.wav"], "cannot read audio"),
    (["--ref-image", "{d}/ref.png", "--input-video", "{d}/input.mp4"], "both --input-video and --mask-video"),
    (["--input-audio", "{d}/speech.wav"], "need --ref-image"),
    (["--ref-image", "{d}/ref.png", "--input-audio", "{d}/speech.wav", "--config.transformer.audio_condition=False"],
     "no audio modules"),
    (["--ref-image", "{d}/ref.png", "--input-video", "{d}/input.mp4", "--mask-video", "{d}/mask.mp4",
      "--config.transformer.video_condition=False"], "no video-condition modules"),
])
def test_bad_inputs_fail_before_model_work(extra, message, files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.plan([a.format(d=files) for a in extra] + ["--save-path", str(tmp_path)])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_input_json_batch_in_one_process_reuses_the_compiled_step(files, tmp_path, monkeypatch, capsys):
    """Two items with their own prompts, names, seeds and images: two videos named after the
    images, one compiled denoising step serving both."""
    import json

    from hyv_jax.sampling import denoise

    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "seg_cat.png")
    items = [{"seg_item_image_path": str(files / "ref.png"), "pos_prompt": "a dog runs", "item_prompt": "dog", "seed": 5},
             {"seg_item_image_path": str(tmp_path / "seg_cat.png"), "pos_prompt": "a cat sits", "neg_prompt": "dark"}]
    for i, item in enumerate(items):
        (tmp_path / f"item{i}.json").write_text(json.dumps(item))
    (tmp_path / "items.list").write_text(f"{tmp_path / 'item0.json'}\n{tmp_path / 'item1.json'}\n")
    args = ["--input-json", str(tmp_path / "items.list"), "--save-path", str(tmp_path / "out"), *SIZE, "--video-length", "5",
            "--add-pos-prompt", "Realistic. "]
    p = sample.plan(args)
    assert [(j.prompt, j.options.seed, j.options.negative_prompt, j.inputs.subject_name, j.save_name) for j in p.jobs] == [
        ("Realistic. a dog runs", 5, p.options.negative_prompt, "dog", "ref"), ("Realistic. a cat sits", 3, "dark", "object", "seg_cat")]
    steps = []
    original = denoise.CompiledStep.__init__
    monkeypatch.setattr(denoise.CompiledStep, "__init__", lambda self, *a, **k: (steps.append(self), original(self, *a, **k))[1])
    written = sample.main(args)
    assert [w.name for w in written] == ["ref.mp4", "seg_cat.mp4"]
    assert len(steps) == 1 and steps[0].traces == 1
    assert "2 items" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sample.plan(args + ["--ref-image", str(files / "ref.png")])
    assert "--input-json items name their own inputs: drop --ref-image" in capsys.readouterr().err


def test_image_cfg_runs_in_identity_mode_only(files, tmp_path, capsys):
    base = ["--ref-image", str(files / "ref.png"), "--save-path", str(tmp_path), *SIZE, "--video-length", "5"]
    (written,) = sample.main([*base, "--ip-cfg-scale", "3", "--infer-steps", "2"])
    assert read_video(written).shape == (5, 32, 48, 3)
    for extra, message in ((["--cfg-scale", "1"], "needs --cfg-scale > 1"),
                           (["--input-audio", str(files / "speech.wav")], "identity mode")):
        with pytest.raises(SystemExit):
            sample.plan([*base, "--ip-cfg-scale", "3", *extra])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample.plan(["--save-path", str(tmp_path), "--ip-cfg-scale", "3"])
    assert "--ip-cfg-scale is HunyuanCustom's" in capsys.readouterr().err
