"""LoRA: only adapters train, merging equals base + adapter; the export in every format
reproduces the trained model, the diffusers one loads into diffusers' HunyuanVideoTransformer3DModel
(via peft) with the same weight deltas, and adapters start from any readable LoRA file exactly
(or refuse, saying why)."""

import jax
import numpy as np
import pytest
import torch
from flax import nnx
from helpers import diffusers_tiny, report
from lora_cases import random_lora, tiny_model, tiny_original, write_comfy, write_diffusers, write_file, write_kohya

from configs import load_config
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.lora.merge import merge_lora_files
from hyv_jax.lora.reader import LoraFormatError
from hyv_jax.lora.writer import FORMATS, save_lora
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.training.lora import inject_lora, lora_layers, merge_lora
from hyv_jax.training.lora_files import export_lora, init_adapters

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)


def _inputs():
    r = np.random.default_rng(0)
    return (r.normal(size=(2, 1, 4, 4, 4)).astype(np.float32), np.array([300.0, 700.0], np.float32),
            r.normal(size=(2, 5, 32)).astype(np.float32), np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32),
            r.normal(size=(2, 16)).astype(np.float32), np.full((2,), 6000.0, np.float32))


def _random_adapters(model, seed=1):
    r = np.random.default_rng(seed)
    for layer in lora_layers(model).values():
        layer.lora_b[...] = 0.05 * r.normal(size=layer.lora_b.shape).astype(np.float32)


def _kernel_deltas(model) -> dict[str, np.ndarray]:
    return {p: np.asarray(layer.delta()) for p, layer in lora_layers(model).items()}


def _run(model, *args):
    """The forward jitted over the split model (eager op-by-op is slow on a shared CPU)."""
    graphdef, state = nnx.split(model)
    return np.asarray(jax.jit(lambda s, *a: nnx.merge(graphdef, s)(*a))(state, *args))


def test_lora_trains_only_adapters_and_merges():
    model = inject_lora(tiny_model(tiny_original()), rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    x = _inputs()
    base_out = _run(model, *x)
    trainable = nnx.state(model, nnx.LoRAParam)
    assert {str(p[-1]) for p, _ in nnx.to_flat_state(trainable)} == {"lora_a", "lora_b"}
    assert len(lora_layers(model)) == 12

    graphdef, adapters, frozen = nnx.split(model, nnx.LoRAParam, ...)
    grads = jax.jit(jax.grad(lambda a: jax.numpy.mean(nnx.merge(graphdef, a, frozen)(*x) ** 2)))(adapters)
    assert all(str(p[-1]).startswith("lora_") for p, _ in nnx.to_flat_state(grads))
    assert any(np.abs(np.asarray(v[...])).max() > 0 for _, v in nnx.to_flat_state(grads))

    _random_adapters(model)
    adapted = _run(model, *x)
    assert np.abs(adapted - base_out).max() > 1e-3  # the adapters change the output
    merged = _run(merge_lora(model), *x)
    assert not lora_layers(model)
    report("merged vs base+adapter", merged, adapted)
    np.testing.assert_allclose(merged, adapted, rtol=1e-4, atol=1e-5)


def _torch_delta(ours: dict[str, np.ndarray], path: str) -> dict[str, np.ndarray]:
    """Our kernel deltas in diffusers' (out, in) Linear layout, by diffusers module name."""
    stack, name = path.split(".", 1)
    d = ours[path]
    out = {}
    for i in range(d.shape[0]):
        k = d[i]
        blk = f"{'transformer_blocks' if stack == 'double_blocks' else 'single_transformer_blocks'}.{i}"
        if name.endswith("qkv"):
            names = ("attn.to_q", "attn.to_k", "attn.to_v") if name != "txt_attn_qkv" else ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")
            for j, n in enumerate(names):
                out[f"{blk}.{n}"] = k.reshape(k.shape[0], 3, -1)[:, j].T
        else:
            out[f"{blk}.{name}"] = k.reshape(-1, k.shape[-1]).T
    return out


def _copy(model):
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.tree.map(jax.numpy.copy, state))


@pytest.fixture(scope="module")
def trained():
    """(base model, the same with random adapters of rank 4, alpha 8)."""
    base = tiny_model(tiny_original())
    model = inject_lora(_copy(base), rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    _random_adapters(model)
    return base, model


def test_export_loads_into_diffusers(trained):
    _, model = trained
    ours = _kernel_deltas(model)
    sd = export_lora(model, "diffusers")
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in sd

    # diffusers: load through its LoRA path, fuse, and read each Linear's weight change.
    tm = diffusers_tiny()
    before = {n: m.weight.detach().clone() for n, m in tm.named_modules() if isinstance(m, torch.nn.Linear)}
    tm.load_lora_adapter({k: torch.from_numpy(v) for k, v in sd.items()}, prefix="transformer", adapter_name="hyv")
    tm.fuse_lora(lora_scale=1.0)
    after = {n: m.weight.detach() for n, m in tm.named_modules() if isinstance(m, torch.nn.Linear)}
    torch_deltas = {n.replace(".base_layer", ""): (after[n] - before[n.replace(".base_layer", "")]).numpy()
                    for n in after if n.replace(".base_layer", "") in before}

    expect = {}
    for path in ours:
        if not path.startswith("single_blocks.linear2"):
            expect.update(_torch_delta(ours, path))
    for i in range(TINY.single_blocks):  # proj_out reads [attention; MLP]
        a = ours["single_blocks.linear2_attn"][i].reshape(-1, TINY.hidden_size)
        m = ours["single_blocks.linear2_mlp"][i]
        expect[f"single_transformer_blocks.{i}.proj_out"] = np.concatenate([a, m], axis=0).T
    expect = {k.replace("img_attn_proj", "attn.to_out.0").replace("txt_attn_proj", "attn.to_add_out")
              .replace("img_mlp.fc1", "ff.net.0.proj").replace("img_mlp.fc2", "ff.net.2")
              .replace("txt_mlp.fc1", "ff_context.net.0.proj").replace("txt_mlp.fc2", "ff_context.net.2")
              .replace("linear1_mlp", "proj_mlp"): v for k, v in expect.items()}
    assert len(expect) == 2 * 12 + 2 * 5
    worst = max(np.abs(torch_deltas[k] - v).max() / np.abs(v).max() for k, v in expect.items())
    print(f"diffusers fused LoRA delta vs ours: max relative error {worst:.2e} over {len(expect)} Linears")
    assert worst < 1e-5


def test_every_export_format_reproduces_the_trained_model(trained, tmp_path):
    base, model = trained
    merged = params_to_numpy(merge_lora(_copy(model)))
    for fmt in FORMATS:
        tensors = export_lora(model, fmt, alpha=3.0 if fmt == "kohya" else None)
        save_lora(tmp_path / f"{fmt}.safetensors", tensors)
        again = _copy(base)
        merge_lora_files(again, [(tmp_path / f"{fmt}.safetensors", 1.0)])
        got = params_to_numpy(again)
        err = max(float(np.abs(got[p] - merged[p]).max()) for p in merged)
        print(f"export {fmt}: merged back into the base, max abs err vs the trained model {err:.2e}")
        assert err < 1e-6
    kohya = export_lora(model, "kohya", alpha=3.0)
    assert kohya["lora_unet_double_blocks_1_img_attn_qkv.alpha"] == np.float32(3.0)
    assert kohya["lora_unet_single_blocks_0_linear1.lora_down.weight"].shape == (8, TINY.hidden_size)  # qkv + mlp ranks stacked
    assert kohya["lora_unet_single_blocks_0_linear2.lora_down.weight"].shape == (8, 5 * TINY.hidden_size)  # [attn | mlp] inputs


def _adapter_model(base, rank=4, targets=None):
    kw = {} if targets is None else {"targets": targets}
    return inject_lora(_copy(base), rank=rank, alpha=2.0, rngs=nnx.Rngs(3), **kw)


def test_adapters_start_from_any_format(trained, tmp_path):
    base, _ = trained
    original = {k: v for k, v in tiny_original().items()}  # module shapes of the tiny model
    modules = ("double_blocks.0.img_attn_qkv", "double_blocks.1.txt_mlp.fc2", "single_blocks.1.linear1", "single_blocks.0.linear2")
    lora = random_lora(original, rank=2, modules=modules)
    diffusers, metadata = write_diffusers(original, lora, TINY.hidden_size)
    files = {"kohya": write_file(tmp_path / "k.safetensors", write_kohya(original, lora)),
             "diffusers": write_file(tmp_path / "d.safetensors", diffusers, metadata),
             "comfyui": write_file(tmp_path / "c.safetensors", write_comfy(original, lora))}
    for fmt, path in files.items():
        model = _adapter_model(base)
        init_adapters(model, path)
        expected = _copy(base)
        merge_lora_files(expected, [(path, 1.0)])
        got, want = params_to_numpy(merge_lora(model)), params_to_numpy(expected)
        err = max(float(np.abs(got[p] - want[p]).max()) for p in want)
        print(f"adapters from a {fmt} file: max abs err vs the file merged {err:.2e}")
        assert err < 1e-6


def test_adapters_refuse_what_they_cannot_hold(trained, tmp_path):
    base, _ = trained
    original = tiny_original()
    rng = np.random.default_rng(0)
    d = TINY.hidden_size
    split = {f"transformer.transformer_blocks.0.attn.{p}.lora_{ab}.weight": rng.standard_normal((2, d) if ab == "A" else (d, 2)).astype(np.float32)
             for p in ("to_q", "to_k", "to_v") for ab in "AB"}
    path = write_file(tmp_path / "split.safetensors", split)
    model = _adapter_model(base, rank=4)  # every refusal comes before any adapter changes
    with pytest.raises(ValueError, match="needs rank 6 .* set --config.training.lora.rank=6"):
        init_adapters(model, path)
    modulation = write_file(tmp_path / "mod.safetensors", write_kohya(original, random_lora(original, modules={"double_blocks.0.img_mod.linear"})))
    with pytest.raises(ValueError, match=r"adapts \['double_blocks.img_mod.linear'\], which training.lora.targets"):
        init_adapters(model, modulation)
    full = write_file(tmp_path / "full.safetensors", {"diffusion_model.double_blocks.0.img_attn.qkv.diff": np.zeros((3 * d, d), np.float32)})
    with pytest.raises(ValueError, match="full deltas"):
        init_adapters(model, full)
    with pytest.raises(LoraFormatError, match="I2V"):
        init_adapters(model, write_file(tmp_path / "i2v.safetensors", {"Hunyuan_video_I2V_lora_x.lora_down.weight": split[
            "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"]}))
    init_adapters(_adapter_model(base, rank=6), path)  # q, k, v with their own A: rank 3 x 2, exactly
