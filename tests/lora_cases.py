"""Shared LoRA test material: random factors on the original checkpoint's modules, the weights
they should give (added in PyTorch layout, converted by the checkpoint converter: no LoRA code
involved), and the same factors written the way each tool writes its files."""

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from helpers import fixture_params, load_fixture

from configs import load_config
from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.mapping import torch_to_jax
from hyv_jax.convert.safetensors_io import write_safetensors
from hyv_jax.convert.model_state import param_shapes, params_to_numpy, params_tree
from hyv_jax.convert.transformer_checkpoint import abstract_transformer
from hyv_jax.convert.transformer_table import transformer_rules
from hyv_jax.lora.table import comfy_name
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.parallel.logical_axes import param_shardings

TINY = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)
# diffusers' LoRA converter mishandles these two (see hyv_jax/lora/reader.py): the test writes
# their diffusers names itself
DIFFUSERS_BY_HAND = ("txt_in.individual_token_refiner.blocks.0.self_attn_qkv", "txt_in.individual_token_refiner.blocks.1.self_attn_qkv",
                     "final_layer.adaLN_modulation.1")


def tiny_original() -> dict[str, np.ndarray]:
    """The official tiny checkpoint (random non-zero weights) in the original naming."""
    return fixture_params(load_fixture("hyvideo_t2v_dit_tiny"))


def zeros_original(config, abstract=abstract_transformer, rules=transformer_rules) -> dict[str, np.ndarray]:
    """Zero tensors under every original name of `config`'s model (shapes for random_lora)."""
    shapes = param_shapes(abstract(config))
    return {r.source: np.zeros(r.transform.torch_shape([shapes[s.path][1:] if s.layer is not None else shapes[s.path]
                                                        for s in r.targets]), np.float32) for r in rules(config)}


def tiny_model(original, config=TINY, abstract=abstract_transformer, rules=transformer_rules, mesh=None):
    """The model holding `original` (float32), built without running its initialisers; on
    `mesh`, each parameter in its logical sharding."""
    model = abstract(config)
    graphdef, state = nnx.split(model)
    flat = torch_to_jax(from_arrays(original), rules(config), param_shapes(model), np.float32)
    arrays = jax.device_put(flat, param_shardings(model, mesh)) if mesh is not None else {p: jnp.asarray(v) for p, v in flat.items()}
    nnx.replace_by_pure_dict(state, params_tree(arrays))
    return nnx.merge(graphdef, state)


def random_lora(original, *, rank=3, seed=0, modules=None) -> dict[str, tuple]:
    """{module: (A (r, in), B (out, r), alpha)} on every linear/conv weight (or `modules`)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key, w in original.items():
        module = key.removesuffix(".weight")
        if not key.endswith(".weight") or w.ndim < 2 or (modules is not None and module not in modules):
            continue
        a = (0.1 * rng.standard_normal((rank, int(np.prod(w.shape[1:]))))).astype(np.float32)
        b = (0.1 * rng.standard_normal((w.shape[0], rank))).astype(np.float32)
        out[module] = a, b, float(rng.uniform(0.5, 8.0))
    return out


def torch_delta(original, module, a, b, alpha) -> np.ndarray:
    w = original[f"{module}.weight"]
    return ((alpha / a.shape[0]) * (b.astype(np.float64) @ a.astype(np.float64))).reshape(w.shape)


def expected_params(model, original, lora, rules, scale=1.0, bias_deltas=None):
    """Our parameters after adding scale * (alpha / r) * B @ A to each weight, in PyTorch layout."""
    changed = dict(original)
    for module, (a, b, alpha) in lora.items():
        changed[f"{module}.weight"] = (original[f"{module}.weight"] + scale * torch_delta(original, module, a, b, alpha)).astype(np.float32)
    for key, d in (bias_deltas or {}).items():
        changed[key] = (original[key] + scale * d).astype(np.float32)
    return torch_to_jax(from_arrays(changed), rules(model.config), param_shapes(model), np.float32)


def write_file(path, tensors, metadata=None):
    """A .safetensors file; `metadata` goes to the `lora_adapter_metadata` header entry."""
    write_safetensors(path, tensors, {"lora_adapter_metadata": json.dumps(metadata)} if metadata else None)
    return path


def max_error(model, expected) -> float:
    got = params_to_numpy(model)
    assert set(got) == set(expected)
    return max(float(np.abs(got[p].astype(np.float64) - expected[p]).max()) for p in expected)


def factor_tensors(original, module, a, b):
    """A and B shaped as the tools store them: (r, in[, k...]) and (out, r[, 1...])."""
    w = original[f"{module}.weight"]
    if w.ndim == 2:
        return a, b
    return a.reshape(a.shape[0], *w.shape[1:]), b.reshape(*b.shape, *(1,) * (w.ndim - 2))


def write_kohya(original, lora, names=lambda m: m):
    """musubi: lora_unet_<name with _>.lora_down/.lora_up/.alpha (scale alpha / rank)."""
    out = {}
    for module, (a, b, alpha) in lora.items():
        name = "lora_unet_" + names(module).replace(".", "_")
        out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = factor_tensors(original, module, a, b)
        out[f"{name}.alpha"] = np.array(alpha, np.float32)
    return out


def write_peft(original, lora, prefix, split_scale=False, names=lambda m: m):
    """lora_A / lora_B without alpha: scale baked into B (diffusion-pipe), or both factors times
    sqrt(alpha / rank) (musubi convert_lora.py --target other)."""
    out = {}
    for module, (a, b, alpha) in lora.items():
        s = alpha / a.shape[0]
        a_s, b_s = (a * np.sqrt(s), b * np.sqrt(s)) if split_scale else (a, b * s)
        name = f"{prefix}{names(module)}"
        out[f"{name}.lora_A.weight"], out[f"{name}.lora_B.weight"] = factor_tensors(original, module, a_s.astype(np.float32),
                                                                                     b_s.astype(np.float32))
    return out


def write_comfy(original, lora, full_modules=()):
    """ComfyUI native names: lora_up/lora_down/alpha; `full_modules` as .diff full deltas."""
    out = {}
    for module, (a, b, alpha) in lora.items():
        name = "diffusion_model." + comfy_name(f"{module}.weight").removesuffix(".weight")
        if module in full_modules:
            out[f"{name}.diff"] = torch_delta(original, module, a, b, alpha).astype(np.float32)
            continue
        out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = factor_tensors(original, module, a, b)
        out[f"{name}.alpha"] = np.array(alpha, np.float32)
    return out


def diffusers_converter(width: int):
    """diffusers' HunyuanVideo LoRA converter with its hard-coded single-block width 3072
    (lora_conversion_utils.py:1648) replaced by `width`."""
    from diffusers.loaders import lora_conversion_utils

    fn = lora_conversion_utils._convert_hunyuan_video_lora_to_diffusers

    def patch(code):
        consts = tuple(patch(c) if isinstance(c, types.CodeType) else (width if c == 3072 else c) for c in code.co_consts)
        return code.replace(co_consts=consts)

    return types.FunctionType(patch(fn.__code__), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def write_diffusers(original, lora, width):
    """diffusers names from diffusers' own converter (one original module at a time), alphas in
    the `lora_adapter_metadata` header as diffusers writes it (LoraConfig fields under the
    "transformer." component prefix, anchored module patterns); the refiner qkv and the final
    modulation, which that converter gets wrong for LoRA, written by hand.
    Returns (tensors, metadata)."""
    out, alphas = {}, {}
    for module, (a, b, alpha) in lora.items():
        if module.startswith("final_layer.adaLN"):  # diffusers keeps (scale, shift), upstream (shift, scale)
            half = b.shape[0] // 2
            pieces = {"norm_out.linear": (a, np.concatenate([b[half:], b[:half]]))}
        elif module.endswith("self_attn_qkv"):
            n = module.replace("txt_in.individual_token_refiner.blocks", "context_embedder.token_refiner.refiner_blocks")
            n = n.removesuffix(".self_attn_qkv")
            pieces = {f"{n}.attn.{proj}": (a, rows) for proj, rows in zip(("to_q", "to_k", "to_v"), np.split(b, 3))}
        else:
            converted = diffusers_converter(width)({f"{module}.lora_A.weight": torch.from_numpy(a.copy()),
                                                    f"{module}.lora_B.weight": torch.from_numpy(b.copy())})
            names = {k.removeprefix("transformer.").rsplit(".lora_", 1)[0] for k in converted}
            pieces = {n: (converted[f"transformer.{n}.lora_A.weight"].numpy(), converted[f"transformer.{n}.lora_B.weight"].numpy())
                      for n in names}
        for name, (a_n, b_n) in pieces.items():
            out[f"transformer.{name}.lora_A.weight"], out[f"transformer.{name}.lora_B.weight"] = factor_tensors(original, module, a_n, b_n)
            alphas[name] = alpha
    rank = next(iter(lora.values()))[0].shape[0]
    metadata = {"transformer.r": rank, "transformer.lora_alpha": 1.0, "transformer.target_modules": sorted(alphas),
                "transformer.alpha_pattern": {f"^{n}": v for n, v in alphas.items()}}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}, metadata
