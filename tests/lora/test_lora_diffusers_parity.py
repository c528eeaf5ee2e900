"""diffusers' own LoRA loading (HunyuanVideoLoraLoaderMixin.load_lora_weights on
HunyuanVideoTransformer3DModel, PEFT layers active) and our merge agree on the transformer's
output, for the formats diffusers reads: diffusers/PEFT with lora_adapter_metadata alphas, and
original keys under `transformer.` and `diffusion_model.`."""

import copy
import functools

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import channels_last, diffusers_tiny, report, torch_timestep_frequencies
from lora_cases import DIFFUSERS_BY_HAND, TINY, diffusers_converter, random_lora, tiny_model, write_diffusers, write_file, write_peft

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.transformer_checkpoint import export_torch_transformer, read_torch_transformer
from hyv_jax.lora.merge import merge_lora_files
from hyv_jax.nn import timestep


def _inputs():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 3, 6, 10)).astype(np.float32)
    text = rng.standard_normal((2, 12, 32)).astype(np.float32)
    mask = np.zeros((2, 12), np.int64)
    mask[0, :12], mask[1, :5] = 1, 1
    return (x, np.array([700.0, 250.0], np.float32), text, mask, rng.standard_normal((2, 16)).astype(np.float32),
            np.array([6016.0, 3500.0], np.float32))


def _theirs(reference, path):
    from diffusers.loaders import HunyuanVideoLoraLoaderMixin

    class Pipe(HunyuanVideoLoraLoaderMixin):  # what the pipeline mixin reads of a pipeline: its transformer
        hf_device_map = None

        def __init__(self, transformer):
            self.transformer = transformer
            self.components = {"transformer": transformer}

    model = copy.deepcopy(reference)
    if path is not None:
        Pipe(model).load_lora_weights(str(path))
    with torch.no_grad():
        return model(*(torch.from_numpy(a) for a in _inputs())).sample.numpy()


@functools.cache
def _forward(graphdef):
    return jax.jit(lambda state, *args: nnx.merge(graphdef, state)(*args))


def _ours(original, path, monkeypatch):
    model = tiny_model(original)
    if path is not None:
        merge_lora_files(model, [(path, 1.0)])
    x, t, text, mask, pooled, g = _inputs()
    monkeypatch.setattr(timestep, "timestep_frequencies", torch_timestep_frequencies)
    graphdef, state = nnx.split(model)
    return np.asarray(_forward(graphdef)(state, channels_last(x), t, text, mask, pooled, g))


@pytest.fixture(scope="module")
def reference():
    return diffusers_tiny()


def test_diffusers_loader_agrees(reference, tmp_path, monkeypatch):
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    original = export_torch_transformer(read_torch_transformer(from_arrays(state), TINY, np.float32), TINY, "original")
    # diffusers splits linear1 at a hard-coded width 3072 (lora_conversion_utils.py:1648): the tiny width instead
    monkeypatch.setattr("diffusers.loaders.lora_pipeline._convert_hunyuan_video_lora_to_diffusers", diffusers_converter(TINY.hidden_size))
    lora = random_lora(original, seed=11)
    readable = {m: v for m, v in lora.items() if m not in DIFFUSERS_BY_HAND}  # diffusers misconverts these two kinds
    diffusers_file, metadata = write_diffusers(original, lora, TINY.hidden_size)
    files = {
        "diffusers + lora_adapter_metadata": write_file(tmp_path / "d.safetensors", diffusers_file, metadata),
        "original, transformer.": write_file(tmp_path / "t.safetensors", write_peft(original, readable, "transformer.")),
        "original, diffusion_model.": write_file(tmp_path / "m.safetensors", write_peft(original, readable, "diffusion_model.", split_scale=True)),
    }
    base = _theirs(reference, None)
    _, base_rel = report("no LoRA: ours vs diffusers", _ours(original, None, monkeypatch), channels_last(base))
    for name, path in files.items():
        ref = channels_last(_theirs(reference, path))
        change = np.abs(ref - channels_last(base)).max() / np.abs(ref).max()
        _, rel = report(f"LoRA {name}: ours vs diffusers (LoRA changes the output by {change:.2f} of its max)",
                        _ours(original, path, monkeypatch), ref)
        assert change > 0.05 and rel < 2e-6
    assert base_rel < 2e-6
