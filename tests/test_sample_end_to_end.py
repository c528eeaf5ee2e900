"""sample.py end to end: the README's main command (the shipped tiny default) draws what the
prompt says; the tiny config with random weights writes an mp4 that decodes back, and a PNG
for one frame."""

import numpy as np

import sample
from hyv_jax.io.video import read_video
from hyv_jax.training.motion_check import check_clip


def test_the_shipped_default_draws_the_prompt(tmp_path, capsys):
    prompt = "a red circle moving left"
    written = sample.main(["--prompt", prompt, "--save-path", str(tmp_path), "--seed", "0", "--num-videos", "2"])
    assert "trained on procedural scenes" in capsys.readouterr().out
    for path in written:
        video = read_video(path)
        assert video.shape == (9, 64, 64, 3)
        check = check_clip(video, prompt)
        assert (check.color, check.direction) == ("red", "left"), (path.name, check)


def test_writes_an_mp4_that_decodes_back(tmp_path, capsys):
    args = ["--config", "configs/tiny.py", "--prompt", "a red kite over the sea", "--save-path", str(tmp_path), "--seed", "5", "--num-videos", "2",
            "--video-size", "32", "48", "--video-length", "5", "--infer-steps", "2"]
    written = sample.main(args)
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out
    assert [p.suffix for p in written] == [".mp4", ".mp4"] and "seed5" in written[0].name and "seed6" in written[1].name
    videos = [read_video(p) for p in written]
    assert all(v.shape == (5, 32, 48, 3) for v in videos)
    assert not np.array_equal(videos[0], videos[1])  # seeds 5 and 6


def test_one_frame_writes_a_png(tmp_path):
    written = sample.main(["--save-path", str(tmp_path), "--seed", "1", "--video-size", "32", "32", "--video-length", "1",
                           "--infer-steps", "1"])
    assert [p.suffix for p in written] == [".png"]
    assert read_video(written[0]).shape == (1, 32, 32, 3)
