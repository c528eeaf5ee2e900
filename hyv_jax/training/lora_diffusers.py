"""LoRA adapters <-> the diffusers/peft layout the PyTorch ecosystem loads for HunyuanVideo
(`HunyuanVideoLoraLoaderMixin`): keys such as
`transformer.transformer_blocks.0.attn.to_q.lora_A.weight` (rank, in) and `...lora_B.weight`
(out, rank), one pair per torch Linear, per layer.

Our linears fuse what diffusers splits, and the reverse:
- a fused qkv adapter exports as to_q / to_k / to_v sharing A (B split by output); separate
  q, k, v adapters load as one adapter of rank 3r (block-diagonal B) unless their A are equal;
- diffusers' single-block proj_out reads [attention; MLP]: our linear2_attn / linear2_mlp
  adapters export as one adapter with block-diagonal A and concatenated B, and load back
  sharing B.
The LoRA scale is baked into B on export (no alpha keys: peft then uses scale 1).
"""

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.training.lora import LoRADense, lora_layers

PREFIX = "transformer."
BLOCKS = {"double_blocks": "transformer_blocks", "single_blocks": "single_transformer_blocks"}
QKV = {"attn.to_q": 0, "attn.to_k": 1, "attn.to_v": 2}
ADD_QKV = {"attn.add_q_proj": 0, "attn.add_k_proj": 1, "attn.add_v_proj": 2}
# our path below a block -> diffusers Linear (plain) or {Linear: qkv index} (split output)
PLAIN = {
    "double_blocks": {"img_attn_proj": "attn.to_out.0", "txt_attn_proj": "attn.to_add_out",
                      "img_mlp.fc1": "ff.net.0.proj", "img_mlp.fc2": "ff.net.2",
                      "txt_mlp.fc1": "ff_context.net.0.proj", "txt_mlp.fc2": "ff_context.net.2"},
    "single_blocks": {"linear1_mlp": "proj_mlp"},
}
SPLIT = {"double_blocks": {"img_attn_qkv": QKV, "txt_attn_qkv": ADD_QKV}, "single_blocks": {"linear1_qkv": QKV}}
CONCAT = {"single_blocks": {"proj_out": ("linear2_attn", "linear2_mlp")}}


def _flat_pair(layer: LoRADense, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer i's (A (in, r), scale * B (r, out)) as flat float32 matrices."""
    a = np.asarray(layer.lora_a[...][i], np.float32)  # one layer to the host, not the whole stack
    b = np.asarray(layer.lora_b[...][i], np.float32) * layer.scale
    return a.reshape(-1, layer.rank), b.reshape(layer.rank, -1)


def export_lora(model: nnx.Module) -> dict[str, np.ndarray]:
    """The model's adapters as a diffusers/peft LoRA state dict of float32 arrays."""
    layers = lora_layers(model)
    unknown = [p for p in layers if p.split(".")[0] not in BLOCKS]
    if unknown:
        raise ValueError(f"adapters {unknown} have no diffusers name; only the double/single blocks export")
    out = {}

    def put(name, a, b):  # a (in, r), b (r, out) -> torch (r, in), (out, r)
        out[f"{PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(a.T)
        out[f"{PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(b.T)

    for stack, torch_stack in BLOCKS.items():
        ours = {p[len(stack) + 1:]: layer for p, layer in layers.items() if p.startswith(stack + ".")}
        n = next((lay.lora_a.shape[0] for lay in ours.values()), 0)
        for i in range(n):
            base = f"{torch_stack}.{i}"
            for path, name in PLAIN.get(stack, {}).items():
                if path in ours:
                    put(f"{base}.{name}", *_flat_pair(ours[path], i))
            for path, names in SPLIT.get(stack, {}).items():
                if path in ours:
                    a, b = _flat_pair(ours[path], i)
                    b3 = b.reshape(b.shape[0], 3, -1)
                    for name, j in names.items():
                        put(f"{base}.{name}", a, b3[:, j])
            for name, parts in CONCAT.get(stack, {}).items():
                present = [p for p in parts if p in ours]
                if not present:
                    continue
                pairs = [_flat_pair(ours[p], i) if p in ours else None for p in parts]
                widths = [pr[0].shape[0] if pr else _in_width(model, stack, p) for pr, p in zip(pairs, parts)]
                ranks = [pr[0].shape[1] if pr else 0 for pr in pairs]
                a = np.zeros((sum(widths), sum(ranks)), np.float32)
                b = np.concatenate([pr[1] for pr in pairs if pr], axis=0)
                row = col = 0
                for pr, w, r in zip(pairs, widths, ranks):
                    if pr:
                        a[row:row + w, col:col + r] = pr[0]
                    row, col = row + w, col + r
                put(f"{base}.{name}", a, b)
    return out


def _in_width(model, stack: str, path: str) -> int:
    dense = _get(getattr(model, stack), path)
    dense = dense.base if isinstance(dense, LoRADense) else dense
    return int(np.prod(dense.in_shape))


def _get(node, dotted: str):
    for name in dotted.split("."):
        node = getattr(node, name)
    return node


def _set(node, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        node = getattr(node, name)
    setattr(node, leaf, value)


def load_lora(model: nnx.Module, state_dict: Mapping[str, np.ndarray], *, rngs: nnx.Rngs) -> nnx.Module:
    """Injects the adapters of a diffusers/peft HunyuanVideo LoRA state dict (in place).
    Layers the file does not cover get a zero adapter; every key must be used."""
    sd = {k: np.asarray(v, np.float32) for k, v in state_dict.items()}
    bad = [k for k in sd if not k.startswith(PREFIX) or not k.endswith((".lora_A.weight", ".lora_B.weight"))]
    if bad:
        raise ValueError(f"not a diffusers/peft HunyuanVideo LoRA: keys {bad[:3]} do not look like "
                         "'transformer.<module>.lora_A.weight' (convert kohya/original-format files with diffusers first)")
    used = set()

    def pair(name):  # -> (A (in, r), B (r, out)) or None
        ka, kb = f"{PREFIX}{name}.lora_A.weight", f"{PREFIX}{name}.lora_B.weight"
        if ka not in sd:
            return None
        if kb not in sd:
            raise ValueError(f"LoRA file has {ka} but no {kb}")
        used.update((ka, kb))
        return sd[ka].T, sd[kb].T

    for stack, torch_stack in BLOCKS.items():
        n = _n_layers(model, stack)
        per_target: dict[str, list] = {}
        for i in range(n):
            base = f"{torch_stack}.{i}"
            for path, name in PLAIN.get(stack, {}).items():
                per_target.setdefault(path, []).append(pair(f"{base}.{name}"))
            for path, names in SPLIT.get(stack, {}).items():
                per_target.setdefault(path, []).append(_join_split([pair(f"{base}.{nm}") for nm in names]))
            for name, parts in CONCAT.get(stack, {}).items():
                pr = pair(f"{base}.{name}")
                if pr is None:
                    for p in parts:
                        per_target.setdefault(p, []).append(None)
                    continue
                a, b = pr
                row = 0
                for p in parts:
                    w = _in_width(model, stack, p)
                    per_target.setdefault(p, []).append((a[row:row + w], b))
                    row += w
                if row != a.shape[0]:
                    raise ValueError(f"{base}.{name}: LoRA A has {a.shape[0]} inputs, the model's proj_out has {row}")
        for path, pairs in per_target.items():
            if any(pairs):
                _install(model, stack, path, pairs, rngs)
    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"LoRA keys {unused[:5]} match no layer of this model (is it the right model/depth?)")
    return model


def _n_layers(model, stack: str) -> int:
    return int(next(iter(nnx.to_flat_state(nnx.state(getattr(model, stack), nnx.Param))))[1].shape[0])


def _join_split(pairs):
    """q, k, v adapters (each (A (in, r), B (r, out)) or None) -> one fused-qkv adapter."""
    present = [p for p in pairs if p is not None]
    if not present:
        return None
    if len(present) == 3 and all(np.array_equal(p[0], present[0][0]) for p in present):
        return present[0][0], np.stack([p[1] for p in present], axis=1).reshape(present[0][1].shape[0], -1)
    d_in, d_out = present[0][0].shape[0], present[0][1].shape[1]
    ranks = [p[0].shape[1] if p else 0 for p in pairs]
    a = np.zeros((d_in, sum(ranks)), np.float32)
    b = np.zeros((sum(ranks), 3, d_out), np.float32)
    col = 0
    for j, (p, r) in enumerate(zip(pairs, ranks)):
        if p:
            a[:, col:col + r], b[col:col + r, j] = p[0], p[1]
        col += r
    return a, b.reshape(sum(ranks), -1)


def _install(model, stack: str, path: str, pairs, rngs) -> None:
    dense = _get(getattr(model, stack), path)
    if isinstance(dense, LoRADense):
        raise ValueError(f"{stack}.{path} already carries a LoRA adapter; merge_lora first")
    ranks = {p[0].shape[1] for p in pairs if p is not None}
    if len(ranks) != 1:
        raise ValueError(f"{stack}.{path}: the LoRA's ranks differ between layers ({sorted(ranks)}); stacked blocks need one rank")
    rank = ranks.pop()
    layer = LoRADense(dense, rank, 1.0, rngs=rngs)
    a_shape, b_shape = layer.lora_a.shape[1:], layer.lora_b.shape[1:]
    a = np.stack([p[0].reshape(a_shape) if p else np.zeros(a_shape, np.float32) for p in pairs])
    b = np.stack([p[1].reshape(b_shape) if p else np.zeros(b_shape, np.float32) for p in pairs])
    if a.shape != layer.lora_a.shape or b.shape != layer.lora_b.shape:
        raise ValueError(f"{stack}.{path}: LoRA shapes {a.shape}/{b.shape} do not fit the model's {layer.lora_a.shape}/{layer.lora_b.shape}")
    layer.lora_a[...] = jnp.asarray(a, layer.lora_a[...].dtype)
    layer.lora_b[...] = jnp.asarray(b, layer.lora_b[...].dtype)
    _set(getattr(model, stack), path, layer)

