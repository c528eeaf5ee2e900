"""One process of a multi-process sample.py job, for tests/test_sample_meshes.py: runs
sample.main with the command-line arguments and saves every frame array it writes as a .npy
beside the video (the mp4 is lossy; the frames are what the processes must agree on)."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
import sample  # noqa: E402
from hyv_jax.io import video  # noqa: E402

write_video = video.write_video


def keep(path, frames, *args, **kwargs):
    np.save(f"{path}.npy", np.asarray(frames))
    return write_video(path, frames, *args, **kwargs)


video.write_video = keep
sample.main(sys.argv[1:])
