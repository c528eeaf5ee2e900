"""Builders of name-table rules for the layer kinds every table has: a torch Linear/Conv
(`weight` -> our `kernel`, `bias`), a norm (`weight`, with or without `bias`), and the pre-LN
encoder layer of CLIP and Whisper (hyv_jax.nn.encoder_layer); and of the regroups between an
official layout and diffusers' (a renamed module, a fused projection cut into pieces)."""

from hyv_jax.convert.mapping import Regroup, Rule, Slot
from hyv_jax.convert.transforms import Copy, Linear

LINEAR, PROJ = Linear(1), Linear(2)  # (out, in) -> (in, *out); (out, heads*head_dim) -> (heads, head_dim, out)


def dense(rules: list[Rule], name: str, path: tuple[str, ...], layer: int | None = None, weight=LINEAR, bias=Copy()) -> None:
    """`name.weight` -> path/kernel through `weight`; `name.bias` -> path/bias (bias=None: none)."""
    rules.append(Rule(f"{name}.weight", (Slot((*path, "kernel"), layer),), weight))
    if bias is not None:
        rules.append(Rule(f"{name}.bias", (Slot((*path, "bias"), layer),), bias))


def norm(rules: list[Rule], name: str, path: tuple[str, ...], layer: int | None = None) -> None:
    rules.append(Rule(f"{name}.weight", (Slot((*path, "weight"), layer),), Copy()))


def layer_norm(rules: list[Rule], name: str, path: tuple[str, ...], layer: int | None = None) -> None:
    norm(rules, name, path, layer)
    rules.append(Rule(f"{name}.bias", (Slot((*path, "bias"), layer),), Copy()))


# transformers' CLIP encoder layer names (text and vision towers) for our EncoderLayer's parts
CLIP_LAYER_NAMES = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn": "self_attn.", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
# ... and Whisper's
WHISPER_LAYER_NAMES = {"norm1": "self_attn_layer_norm", "norm2": "final_layer_norm", "attn": "self_attn.", "fc1": "fc1", "fc2": "fc2"}


def encoder_layer(rules: list[Rule], src: str, dst: tuple[str, ...], layer: int, names: dict[str, str], *, k_bias: bool = True) -> None:
    """Layer `layer` of a stacked EncoderLayer at `dst`, from checkpoint names under `src`."""
    layer_norm(rules, f"{src}.{names['norm1']}", (*dst, "norm1"), layer)
    layer_norm(rules, f"{src}.{names['norm2']}", (*dst, "norm2"), layer)
    for proj in ("q_proj", "k_proj", "v_proj"):
        dense(rules, f"{src}.{names['attn']}{proj}", (*dst, proj), layer, bias=Copy() if proj != "k_proj" or k_bias else None)
    dense(rules, f"{src}.{names['attn']}out_proj", (*dst, "out_proj"), layer, weight=PROJ)
    dense(rules, f"{src}.{names['fc1']}", (*dst, "mlp", "fc1"), layer)
    dense(rules, f"{src}.{names['fc2']}", (*dst, "mlp", "fc2"), layer)


def rename(groups: list[Regroup], original: str, diffusers: str, suffixes=("weight", "bias")) -> None:
    """`original.s` <-> `diffusers.s` for each suffix ("" for a bare parameter name)."""
    for s in suffixes:
        groups.append(Regroup(f"{original}.{s}" if s else original, (f"{diffusers}.{s}" if s else diffusers,)))


def chunk(groups: list[Regroup], original: str, pieces, sizes, suffixes=("weight", "bias"), reverse=False) -> None:
    """`original.s` <-> the `pieces` (rows of `sizes`), e.g. a fused qkv <-> to_q, to_k, to_v."""
    for s in suffixes:
        groups.append(Regroup(f"{original}.{s}", tuple(f"{p}.{s}" for p in pieces), sizes, reverse))
