"""LoRA: only adapters train, merging equals base + adapter, and the diffusers export loads
into diffusers' HunyuanVideoTransformer3DModel (via peft) with the same weight deltas."""

import jax
import numpy as np
import torch
from flax import nnx
from helpers import report

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.training.lora import inject_lora, lora_layers, merge_lora
from hyv_jax.training.lora_diffusers import export_lora, load_lora

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


def test_lora_trains_only_adapters_and_merges():
    model = inject_lora(HunyuanVideoTransformer(TINY, rngs=nnx.Rngs(0)), rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    x = _inputs()
    base_out = np.asarray(model(*x))
    trainable = nnx.state(model, nnx.LoRAParam)
    assert {str(p[-1]) for p, _ in nnx.to_flat_state(trainable)} == {"lora_a", "lora_b"}
    assert len(lora_layers(model)) == 12

    grads = nnx.grad(lambda m: jax.numpy.mean(m(*x) ** 2), argnums=nnx.DiffState(0, nnx.LoRAParam))(model)
    assert all(str(p[-1]).startswith("lora_") for p, _ in nnx.to_flat_state(grads))
    assert any(np.abs(np.asarray(v[...])).max() > 0 for _, v in nnx.to_flat_state(grads))

    _random_adapters(model)
    adapted = np.asarray(model(*x))
    assert np.abs(adapted - base_out).max() > 1e-3  # the adapters change the output
    merged = np.asarray(merge_lora(model)(*x))
    assert not lora_layers(model)
    report("merged vs base+adapter", merged, adapted)
    np.testing.assert_allclose(merged, adapted, rtol=1e-4, atol=1e-5)


def _diffusers_tiny():
    from diffusers import HunyuanVideoTransformer3DModel

    torch.manual_seed(0)
    return HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=32, num_layers=2,
        num_single_layers=2, num_refiner_layers=1, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
        text_embed_dim=32, pooled_projection_dim=16, rope_axes_dim=(8, 12, 12)).eval()


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


def test_export_loads_into_diffusers_and_back(tmp_path):
    model = inject_lora(HunyuanVideoTransformer(TINY, rngs=nnx.Rngs(0)), rank=4, alpha=8.0, rngs=nnx.Rngs(1))
    _random_adapters(model)
    ours = _kernel_deltas(model)
    sd = export_lora(model)
    assert "transformer.transformer_blocks.0.attn.to_q.lora_A.weight" in sd

    # diffusers: load through its LoRA path, fuse, and read each Linear's weight change.
    tm = _diffusers_tiny()
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

    # and back: loading the export reproduces every kernel delta
    back = load_lora(HunyuanVideoTransformer(TINY, rngs=nnx.Rngs(0)), sd, rngs=nnx.Rngs(2))
    for path, d in _kernel_deltas(back).items():
        report(f"reloaded {path}", d, ours[path])
        np.testing.assert_allclose(d, ours[path], rtol=1e-5, atol=1e-7)
