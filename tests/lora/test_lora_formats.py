"""LoRA files in every circulating format merge into exactly W + scale * (alpha / r) * B @ A,
the same deltas give the same model whatever the format, and bad files fail naming the key."""

import jax
import numpy as np
import pytest
from flax import nnx
from lora_cases import (
    TINY, expected_params, max_error, random_lora, tiny_model, tiny_original, write_comfy, write_diffusers, write_file,
    write_kohya, write_peft,
)

from configs import load_config
from hyv_jax.convert.custom_checkpoint import abstract_custom
from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_table import transformer_rules
from hyv_jax.lora.merge import merge_lora_files
from hyv_jax.lora.reader import LoraFormatError
from hyv_jax.lora.table import comfy_name
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.parallel.logical_axes import param_shardings
from hyv_jax.parallel.mesh import make_mesh

TOL = 5e-7  # weights are O(1): float32 rounding of W + delta


@pytest.fixture(scope="module")
def original():
    return tiny_original()


@pytest.fixture(scope="module")
def lora(original):
    return random_lora(original)


def _files(original, lora, tmp_path):
    """The same factors in every format."""
    full = ("img_in.proj", "single_blocks.1.linear1", "double_blocks.0.txt_mlp.fc2")  # as ComfyUI .diff full deltas
    diffusers, metadata = write_diffusers(original, lora, TINY.hidden_size)
    return {
        "kohya (musubi)": write_file(tmp_path / "kohya.safetensors", write_kohya(original, lora)),
        "kohya (ComfyUI names)": write_file(tmp_path / "kohya_comfy.safetensors",
                                        write_kohya(original, lora, lambda m: comfy_name(f"{m}.weight").removesuffix(".weight"))),
        "original transformer. (diffusion-pipe)": write_file(tmp_path / "dp.safetensors", write_peft(original, lora, "transformer.")),
        "original diffusion_model. (musubi other)": write_file(tmp_path / "other.safetensors",
                                                           write_peft(original, lora, "diffusion_model.", split_scale=True)),
        "ComfyUI native": write_file(tmp_path / "comfy.safetensors", write_comfy(original, lora, full)),
        "diffusers": write_file(tmp_path / "diffusers.safetensors", diffusers, metadata),
    }


def test_every_format_merges_exactly_and_alike(original, lora, tmp_path):
    expected = expected_params(tiny_model(original), original, lora, transformer_rules)
    merged, errors = {}, {}
    for fmt, path in _files(original, lora, tmp_path).items():
        model = tiny_model(original)
        (updates,) = merge_lora_files(model, [(path, 1.0)])
        errors[fmt] = max_error(model, expected)
        merged[fmt] = params_to_numpy(model)
        print(f"{fmt:42s} {updates.format:28s} max abs err vs W + (alpha/r) B@A: {errors[fmt]:.2e}")
    assert max(errors.values()) < TOL, errors
    first = next(iter(merged.values()))
    spread = max(float(np.abs(m[p] - first[p]).max()) for m in merged.values() for p in first)
    print(f"largest difference between formats: {spread:.2e}")
    assert spread < 2 * TOL


def test_comfy_names_are_comfyui_module_names():
    # attribute paths of ComfyUI's HunyuanVideo (comfy/ldm/hunyuan_video/model.py, Flux layers)
    pairs = {
        "double_blocks.3.img_mod.linear.weight": "double_blocks.3.img_mod.lin.weight",
        "double_blocks.3.txt_attn_qkv.bias": "double_blocks.3.txt_attn.qkv.bias",
        "double_blocks.3.img_attn_proj.weight": "double_blocks.3.img_attn.proj.weight",
        "double_blocks.3.img_attn_q_norm.weight": "double_blocks.3.img_attn.norm.query_norm.scale",
        "double_blocks.3.txt_mlp.fc2.weight": "double_blocks.3.txt_mlp.2.weight",
        "single_blocks.7.modulation.linear.bias": "single_blocks.7.modulation.lin.bias",
        "single_blocks.7.k_norm.weight": "single_blocks.7.norm.key_norm.scale",
        "single_blocks.7.linear1.weight": "single_blocks.7.linear1.weight",
        "time_in.mlp.0.weight": "time_in.in_layer.weight",
        "guidance_in.mlp.2.bias": "guidance_in.out_layer.bias",
        "txt_in.t_embedder.mlp.2.weight": "txt_in.t_embedder.out_layer.weight",
        "txt_in.c_embedder.linear_1.weight": "txt_in.c_embedder.in_layer.weight",
        "txt_in.individual_token_refiner.blocks.1.self_attn_qkv.weight": "txt_in.individual_token_refiner.blocks.1.self_attn.qkv.weight",
        "txt_in.individual_token_refiner.blocks.1.mlp.fc1.weight": "txt_in.individual_token_refiner.blocks.1.mlp.0.weight",
        "final_layer.adaLN_modulation.1.weight": "final_layer.adaLN_modulation.1.weight",
        "vector_in.in_layer.weight": "vector_in.in_layer.weight",
    }
    assert {k: comfy_name(k) for k in pairs} == pairs


def test_diffusers_pieces_with_their_own_factors(original, tmp_path):
    """q, k, v with different A and ranks (rank_pattern), rslora, a bias factor: each its own term."""
    rng = np.random.default_rng(5)
    d = TINY.hidden_size
    tensors, deltas = {}, {}
    names = {"to_q": 0, "to_k": 1, "to_v": 2}
    for proj, j in names.items():
        r = 2 + j
        a, b = (0.1 * rng.standard_normal((r, d))).astype(np.float32), (0.1 * rng.standard_normal((d, r))).astype(np.float32)
        tensors[f"transformer.transformer_blocks.1.attn.{proj}.lora_A.weight"] = a
        tensors[f"transformer.transformer_blocks.1.attn.{proj}.lora_B.weight"] = b
        deltas[j] = (4.0 / np.sqrt(r)) * (b @ a)
    bias = (0.1 * rng.standard_normal(d)).astype(np.float32)
    tensors["transformer.transformer_blocks.1.attn.to_k.lora_B.bias"] = bias
    metadata = {"r": 2, "lora_alpha": 4.0, "use_rslora": True, "lora_bias": True,
                "rank_pattern": {"^transformer_blocks.1.attn.to_k": 3, "^transformer_blocks.1.attn.to_v": 4}}
    qkv = np.concatenate([deltas[0], deltas[1], deltas[2]])  # (3D, D): the fused weight's change
    lora = {"double_blocks.1.img_attn_qkv": (np.eye(d, dtype=np.float32), qkv, d)}  # I, qkv, alpha = rank: qkv @ I
    bias_delta = np.zeros(3 * d, np.float32)
    bias_delta[d:2 * d] = (4.0 / np.sqrt(3)) * bias  # PEFT scales lora_B's bias with the layer
    model = tiny_model(original)
    expected = expected_params(model, original, lora, transformer_rules, bias_deltas={"double_blocks.1.img_attn_qkv.bias": bias_delta})
    (updates,) = merge_lora_files(model, [(write_file(tmp_path / "d.safetensors", tensors, metadata), 1.0)])
    assert sorted(t.rank for ts in updates.terms.values() for t in ts if hasattr(t, "rank")) == [2, 3, 4]
    err = max_error(model, expected)
    print(f"diffusers q/k/v with own ranks, rslora, bias factor: max abs err {err:.2e}")
    assert err < TOL


def test_full_and_bias_deltas(original, tmp_path):
    """ComfyUI .diff on a conv, a norm and a fused linear; .diff_b on biases (layout of the module)."""
    rng = np.random.default_rng(2)
    tensors, weights, biases = {}, {}, {}
    for module, comfy in (("img_in.proj", "img_in.proj"), ("single_blocks.0.linear2", "single_blocks.0.linear2"),
                          ("txt_in.individual_token_refiner.blocks.0.norm1", "txt_in.individual_token_refiner.blocks.0.norm1")):
        weights[module] = rng.standard_normal(original[f"{module}.weight"].shape).astype(np.float32)
        tensors[f"diffusion_model.{comfy}.diff"] = weights[module]
    for module, comfy in (("single_blocks.1.linear1", "single_blocks.1.linear1"), ("double_blocks.0.img_mod.linear", "double_blocks.0.img_mod.lin"),
                          ("final_layer.linear", "final_layer.linear")):
        biases[f"{module}.bias"] = rng.standard_normal(original[f"{module}.bias"].shape).astype(np.float32)
        tensors[f"diffusion_model.{comfy}.diff_b"] = biases[f"{module}.bias"]
    biases.update({f"{m}.weight": w for m, w in weights.items()})
    model = tiny_model(original)
    expected = expected_params(model, original, {}, transformer_rules, scale=0.5, bias_deltas=biases)
    merge_lora_files(model, [(write_file(tmp_path / "full.safetensors", tensors), 0.5)])
    err = max_error(model, expected)
    print(f".diff / .diff_b at scale 0.5: max abs err {err:.2e}")
    assert err < TOL


# one module of each kind: fused qkv (heads), split linear1 / linear2, modulation, conv, final layer, refiner
SOME = ("double_blocks.1.txt_attn_qkv", "single_blocks.0.linear1", "single_blocks.1.linear2", "double_blocks.0.img_mod.linear",
        "img_in.proj", "final_layer.linear", "txt_in.individual_token_refiner.blocks.1.mlp.fc2")


def test_several_loras_add_with_their_scales(original, tmp_path):
    a, b = random_lora(original, seed=1, modules=SOME), random_lora(original, rank=2, seed=2, modules=SOME)
    files = [(write_file(tmp_path / "a.safetensors", write_kohya(original, a)), 0.7),
             (write_file(tmp_path / "b.safetensors", write_peft(original, b, "transformer.")), -1.3)]
    model = tiny_model(original)
    merge_lora_files(model, files)
    base = tiny_model(original)
    # expected: both changes in PyTorch layout, each at its scale
    both = {m: (np.concatenate([a[m][0] * np.sqrt(0.7 * a[m][2] / 3), b[m][0] * np.sqrt(1.3 * b[m][2] / 2)]),
                np.concatenate([a[m][1] * np.sqrt(0.7 * a[m][2] / 3), -b[m][1] * np.sqrt(1.3 * b[m][2] / 2)], axis=1), 5.0) for m in a}
    err = max_error(model, expected_params(base, original, both, transformer_rules))
    print(f"two LoRAs at 0.7 and -1.3: max abs err {err:.2e}")
    assert err < TOL


def test_merge_updates_the_stack_in_place(original, tmp_path):
    """Each layer's change goes into the donated buffer of the stacked parameter: no second copy."""
    model = tiny_model(original)
    kernel = model.double_blocks.img_attn_qkv.kernel
    before = kernel[...]
    lora = random_lora(original, modules={"double_blocks.0.img_attn_qkv", "double_blocks.1.img_attn_qkv"})
    merge_lora_files(model, [(write_file(tmp_path / "k.safetensors", write_kohya(original, lora)), 1.0)])
    assert before.is_deleted() and not kernel[...].is_deleted()


def test_zero_scale_leaves_the_weights_untouched(original, lora, tmp_path):
    model = tiny_model(original)
    before = params_to_numpy(model)
    merge_lora_files(model, [(write_file(tmp_path / "k.safetensors", write_kohya(original, lora)), 0.0)])
    after = params_to_numpy(model)
    assert all(np.array_equal(before[p], after[p]) for p in before)


def test_unknown_key_fails_with_its_name_or_is_skipped_with_a_warning(original, lora, tmp_path):
    tensors = write_kohya(original, {m: v for m, v in lora.items() if m.startswith("double_blocks.0.")})
    tensors["lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = np.zeros((3, 32), np.float32)
    tensors["lora_unet_double_blocks_9_img_attn_qkv.lora_down.weight"] = np.zeros((3, 64), np.float32)  # no block 9
    path = write_file(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(LoraFormatError, match="lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight") as e:
        merge_lora_files(tiny_model(original), [(path, 1.0)])
    assert "lora_unet_double_blocks_9_img_attn_qkv.lora_down.weight" in str(e.value)
    model = tiny_model(original)
    with pytest.warns(UserWarning, match="skipped 2 keys") as w:
        merge_lora_files(model, [(path, 1.0)], skip_unknown=True)
    assert "lora_unet_double_blocks_9_img_attn_qkv.lora_down.weight" in str(w[0].message)
    assert "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight" in str(w[0].message)


def test_bad_files_say_why(original, lora, tmp_path):
    one = {m: v for m, v in lora.items() if m == "double_blocks.0.img_attn_qkv"}
    kohya = write_kohya(original, one)
    cases = {
        "I2V": {k.replace("lora_unet_", "Hunyuan_video_I2V_lora_"): v for k, v in kohya.items()},
        "2C\\+1 = 9 latent channels": {"diffusion_model.img_in.proj.lora_A.weight": np.zeros((3, 9, 1, 2, 2), np.float32),
                                       "diffusion_model.img_in.proj.lora_B.weight": np.zeros((64, 3, 1, 1, 1), np.float32)},
        "LoHa": {"lora_unet_double_blocks_0_img_attn_qkv.hada_w1_a": np.zeros((4, 4), np.float32)},
        "has no matching up factor": {k: v for k, v in kohya.items() if "lora_up" not in k},
        "do not fit double_blocks.0.img_attn_qkv": {k: (v[:, :32] if "down" in k else v) for k, v in kohya.items()},
        "no key maps": {},
    }
    for why, tensors in cases.items():
        path = write_file(tmp_path / "case.safetensors", tensors or {"unrelated": np.zeros(1, np.float32)})
        with pytest.raises(LoraFormatError, match=why):
            merge_lora_files(tiny_model(original), [(path, 1.0)], skip_unknown=not tensors)


def test_hunyuan_custom_modules(tmp_path):
    """The same DiT names on HunyuanCustom, and its own modules (audio, video condition)."""
    from helpers import fixture_params, load_fixture

    config = CustomTransformerConfig.from_mapping(load_config("configs/tiny_custom.py").transformer)
    params = fixture_params(load_fixture("hycustom_dit_tiny"))
    original = {k: v for k, v in params.items() if k in {r.source for r in custom_rules(config)}}

    def model():
        return tiny_model(original, config, abstract_custom, custom_rules)

    lora = random_lora(original, modules={"double_blocks.1.img_attn_qkv", "single_blocks.0.linear2", "bg_proj", "bg_in.proj",
                                          "audio_proj.proj1", "audio_models.1.to_kv", "audio_models.0.to_out"})
    assert len(lora) == 7
    m = model()
    merge_lora_files(m, [(write_file(tmp_path / "custom.safetensors", write_kohya(original, lora)), 1.0)])
    err = max_error(m, expected_params(m, original, lora, custom_rules))
    print(f"HunyuanCustom (audio, video-condition modules): max abs err {err:.2e}")
    assert err < TOL
    t2v = write_peft(tiny_original(), random_lora(tiny_original(), modules={"guidance_in.mlp.0"}), "transformer.")
    with pytest.raises(LoraFormatError, match="transformer.guidance_in.mlp.0.lora_A.weight"):
        merge_lora_files(model(), [(write_file(tmp_path / "t2v.safetensors", t2v), 1.0)])


def test_sharded_merge_equals_single_device(original, tmp_path):
    assert jax.device_count() >= 8, "tests/conftest.py sets XLA_FLAGS=--xla_force_host_platform_device_count=8"
    lora = random_lora(original, modules={*SOME, "double_blocks.0.img_attn_qkv", "double_blocks.1.img_mlp.fc1"})
    path = write_file(tmp_path / "k.safetensors", write_kohya(original, lora))
    single = tiny_model(original)
    merge_lora_files(single, [(path, 0.8)])
    mesh = make_mesh({"fsdp": 4, "tensor": 2})
    sharded = tiny_model(original, mesh=mesh)
    shardings = param_shardings(sharded, mesh)
    merge_lora_files(sharded, [(path, 0.8)])
    qkv = ("double_blocks", "img_attn_qkv", "kernel")
    assert shardings[qkv].spec == jax.sharding.PartitionSpec(None, "fsdp", None, "tensor", None)
    for p, var in nnx.to_flat_state(nnx.state(sharded, nnx.Param)):
        assert var[...].sharding == shardings[tuple(p)], p
    a, b = params_to_numpy(sharded), params_to_numpy(single)
    err = max(float(np.abs(a[p] - b[p]).max()) for p in a)
    print(f"FSDP x tensor (4 x 2) merge vs single device: max abs difference {err:.2e}")
    assert err <= 1e-7


def test_a_failed_merge_into_host_memory_leaves_the_parameter(original, tmp_path, monkeypatch):
    """A parameter staged in host memory (fp8 or offload loading) was moved to the device, its
    host buffer freed, before the merge: a merge that raised left the model a deleted buffer.
    Merged in a copy, it keeps the original until the merged one is back in host memory."""
    from hyv_jax.lora import merge

    model = tiny_model(original)
    var = model.double_blocks.img_attn_qkv.kernel
    var.set_value(jax.device_put(var[...], var[...].sharding.with_memory_kind("pinned_host")))
    before = np.asarray(var[...])
    lora = random_lora(original, modules={"double_blocks.0.img_attn_qkv"})
    path = write_file(tmp_path / "k.safetensors", write_kohya(original, lora))

    def fail(*args):
        raise RuntimeError("out of device memory")

    monkeypatch.setattr(merge, "_add_term", fail)
    with pytest.raises(RuntimeError, match="out of device memory"):
        merge_lora_files(model, [(path, 1.0)])
    assert not var[...].is_deleted() and var[...].sharding.memory_kind == "pinned_host"
    np.testing.assert_array_equal(np.asarray(var[...]), before)
    monkeypatch.undo()
    merge_lora_files(model, [(path, 1.0)])  # and a merge that works still lands in host memory
    assert var[...].sharding.memory_kind == "pinned_host" and not np.array_equal(np.asarray(var[...]), before)
