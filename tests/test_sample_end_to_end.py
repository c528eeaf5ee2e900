"""sample.py end to end on the tiny config with random weights (the README's main command,
smaller): real text encoder, transformer and VAE; an mp4 that decodes back, and a PNG for one
frame."""

import numpy as np

import sample
from hyv_jax.io.video import read_video


def test_writes_an_mp4_that_decodes_back(tmp_path, capsys):
    args = ["--prompt", "a red kite over the sea", "--save-path", str(tmp_path), "--seed", "5", "--num-videos", "2",
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
