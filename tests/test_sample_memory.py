"""sample.py's memory flags on the shipped tiny default: --use-fp8 --use-cpu-offload samples, with
the DiT placed after the text encoders and freed before the decode (--residency sequential),
writing the frames of --use-fp8 alone bit for bit; the same on an 8-device ring (--ring-degree
8) writes them up to the mesh's float32 reordering; --dry-run prints the plan and loads
nothing."""

import json

import pytest

import sample
from hyv_jax.sampling import pipeline as pipeline_module
from test_sample_meshes import assert_same_frames, frames_written

FLAGS = ["--prompt", "a red circle moving left", "--seed", "0", "--infer-steps", "8", "--compile-cache", ""]
ONE_DEVICE = ["--config.parallel.mesh.fsdp=1"]


@pytest.fixture(scope="module")
def fp8_frames(tmp_path_factory):
    return frames_written(tmp_path_factory.mktemp("fp8"), [*FLAGS, "--use-fp8", *ONE_DEVICE])


def test_fp8_with_offload_and_sequential_residency_writes_the_fp8_frames(fp8_frames, tmp_path, monkeypatch, capsys):
    events = []
    release, state = pipeline_module.TextToVideoPipeline.release, pipeline_module.TextToVideoPipeline.transformer_state

    def placed(self):
        if self.state is None:
            events.append(("place", self.text_encoder.loaded))  # the text encoders are freed by then
        return state(self)

    def freed(self):
        events.append(("free", None))
        release(self)

    monkeypatch.setattr(pipeline_module.TextToVideoPipeline, "transformer_state", placed)
    monkeypatch.setattr(pipeline_module.TextToVideoPipeline, "release", freed)
    ours = frames_written(tmp_path, [*FLAGS, "--use-fp8", "--use-cpu-offload", "--residency", "sequential", *ONE_DEVICE])
    assert events == [("place", False), ("free", None)]
    for a, b in zip(ours, fp8_frames, strict=True):
        assert (a == b).all()


def test_fp8_with_offload_on_an_eight_device_ring_writes_the_one_device_frames(fp8_frames, tmp_path, capsys):
    ours = frames_written(tmp_path, [*FLAGS, "--use-fp8", "--cpu-offload", "--ring-degree", "8"])
    assert "context 8" in capsys.readouterr().out
    assert_same_frames("fp8 + offload, ring 8", ours, fp8_frames)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pipeline_module.TextToVideoPipeline, "from_config", None)  # would load weights
    assert sample.main([*FLAGS, "--dry-run", "--use-fp8", "--save-path", str(tmp_path)]) == []
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["mode"] == "fp8" and summary["residency"] == "resident" and summary["text_tokens"] == 32
    assert 0 < summary["weights_device_bytes"] < summary["peak_device_bytes"] and not list(tmp_path.iterdir())
    assert any(line.startswith("peak ") for line in lines)
