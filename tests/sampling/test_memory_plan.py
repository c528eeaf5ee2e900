"""The memory plan (hyv_jax/sampling/memory_plan.py): its exact figures are the buffers a real
run of the shipped tiny default holds (device and pinned host, fp8 + offload); the 13B plan at
720x1280x129 fits 24 GiB with fp8 and offload (sample.py --dry-run, the issue's command); the
residency choice and the refusal of runs that cannot fit; the FLOP count of the spec."""

import dataclasses
import gc
import json

import jax
import pytest

import sample
from configs import load_config
from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import load_text_encoder
from hyv_jax.loading.shipped import TEXT_ENCODER_SEED, shipped_paths
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.sampling import pipeline as pipeline_module
from hyv_jax.sampling.memory_plan import GiB, MemoryPlan, Part, choose_residency, flops_per_step, plan_memory
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.pipeline import TextToVideoPipeline

MODE = MemoryMode(fp8=True, offload=True)


def live_bytes(before: set[int]) -> dict[str, int]:
    """Bytes of the live JAX arrays (one device) not in `before` (ids), per memory kind."""
    gc.collect()
    out = {"device": 0, "pinned_host": 0}
    for array in jax.live_arrays():
        if id(array) not in before:
            out[array.sharding.memory_kind] += array.nbytes
    return out


def test_the_tiny_plan_holds_the_buffers_of_a_real_run(monkeypatch):
    config = load_config("configs/tiny_default.py")
    options = dataclasses.replace(SamplingOptions.from_mapping(config.sampling), steps=2)
    encoder = load_text_encoder(config.text_encoder, seed=TEXT_ENCODER_SEED)
    text_length = encoder.llm_tokenizer.max_length - encoder.crops["video"]
    plan = plan_memory(config, options, memory=MODE, text_length=text_length).summary()

    gc.collect()
    before = {id(a) for a in jax.live_arrays()}
    seen = {}
    denoise = pipeline_module.denoise

    def measuring(step, state, noise, *args, **kwargs):  # the denoise phase: DiT, step inputs, VAE
        seen["denoise"] = live_bytes(before)
        return denoise(step, state, noise, *args, **kwargs)

    monkeypatch.setattr(pipeline_module, "denoise", measuring)
    pipeline = TextToVideoPipeline.from_config(config, shipped_paths(), memory=MODE)
    release = pipeline.text_encoder.release

    def release_measuring():  # the encode phase, before the encoders are freed: encoders, VAE
        seen["encode"] = live_bytes(before)
        release()

    pipeline.text_encoder.release = release_measuring
    pipeline("a red circle moving left", options, progress=False)
    measured = seen
    phases = plan["phases"]
    predicted = {
        "denoise": phases["denoise"]["DiT weights"] + phases["denoise"]["step inputs"] + phases["denoise"]["VAE weights"],
        "encode": phases["encode"]["text encoder weights"] + phases["encode"]["VAE weights"],
        "host": plan["host_weights_bytes"],
    }
    got = {"denoise": measured["denoise"]["device"], "encode": measured["encode"]["device"], "host": measured["denoise"]["pinned_host"]}
    print(f"tiny default, fp8 + offload, bytes: planned {predicted}, live in the run {got}")
    for key in predicted:
        assert abs(got[key] - predicted[key]) <= 0.1 * predicted[key], key


def test_the_13b_dry_run_fits_24_gib_with_fp8_and_offload(tmp_path, capsys):
    assert sample.main(["--config", "configs/hunyuan_video_t2v.py", "--dry-run", "--video-size", "720", "1280",
                        "--video-length", "129", "--use-fp8", "--use-cpu-offload", "--save-path", str(tmp_path),
                        "--compile-cache", "", "--config.parallel.mesh.fsdp=1"]) == []  # one device of the 8
    out = capsys.readouterr().out
    print(out)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["peak_device_bytes"] <= 24 * GiB and summary["tokens"] == 118800 + 256 and "one device" in summary["target"]
    # the blocks stream from host memory; the device keeps the embedders, refiner and final layer
    assert summary["weights_device_bytes"] < 1 * GiB and summary["host_weights_bytes"] > 11 * GiB
    assert summary["mode"] == "fp8 + offload" and abs(summary["flops_per_step"] / 12.07e15 - 1) < 0.01


def plan_of(denoise_gib: float, encode_gib: float, dit_gib: float, capacity_gib: float | None) -> MemoryPlan:
    parts = (Part("denoise", "DiT weights", int(dit_gib * GiB), "exact"), Part("denoise", "step activations", int(denoise_gib * GiB), "compiled"),
             Part("encode", "text encoder weights", int(encode_gib * GiB), "exact"))
    return MemoryPlan("", "", "resident", "sequential", 1, 1, 1, 1.0, parts, 0,
                      None if capacity_gib is None else int(capacity_gib * GiB))


def test_auto_residency_keeps_what_fits_and_refuses_what_cannot():
    assert choose_residency(plan_of(10, 14, 24, 80)).residency == "resident"  # 24 + 14 fits 80
    assert choose_residency(plan_of(10, 14, 24, None)).residency == "resident"  # unknown capacity (CPU)
    chosen = choose_residency(plan_of(10, 14, 24, 36))  # resident: 38 GiB while encoding; sequential: 34
    assert chosen.residency == "sequential" and chosen.peak == (34 * GiB, "denoise")
    with pytest.raises(ValueError, match=r"needs about 34\.0 GiB .* --use-fp8, --use-cpu-offload, a smaller --video-size"):
        choose_residency(plan_of(10, 14, 24, 24))
    with pytest.raises(ValueError, match="needs about 38.0 GiB"):
        choose_residency(plan_of(10, 14, 24, 36), "resident")


def test_flops_per_step_are_the_spec_figures():
    # shared/spec/PERFORMANCE.md: 12.07 PF per 720x1280x129 step, 4.29 PF at 544x960x129
    assert abs(flops_per_step(TransformerConfig(), 118800, 256, 1) / 12.07e15 - 1) < 1e-3
    assert abs(flops_per_step(TransformerConfig(), 67320, 256, 1) / 4.29e15 - 1) < 2e-3
