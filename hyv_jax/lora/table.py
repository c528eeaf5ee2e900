"""Every name a HunyuanVideo LoRA file may give a module, resolved to a module of the original
checkpoint and, through the converter's name table, to our parameters.

Nothing here is a second map of the DiT: the modules are the rules of
hyv_jax/convert/transformer_table.py (or custom_table.py), and the other namings derive from
them:
- original: the rule's module name (`double_blocks.0.img_attn_qkv`);
- ComfyUI native (Flux-style): the renames ComfyUI applies when it loads an original
  checkpoint (`img_attn.qkv`, `img_mlp.0`, `img_mod.lin`, norms as `...query_norm.scale`);
- diffusers: the pieces of the converter's diffusers regroups (`transformer_blocks.0.attn.to_q`
  is rows [0, D) of `img_attn_qkv`; `norm_out.linear` is the final modulation with its halves
  swapped);
- kohya/musubi: `lora_unet_` + the original or ComfyUI name with dots as underscores.
"""

import dataclasses
from collections.abc import Mapping

import numpy as np

from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.mapping import Regroup, Rule
from hyv_jax.convert.transformer_table import diffusers_regroups, transformer_rules
from hyv_jax.models.custom.transformer import CustomTransformerConfig
from hyv_jax.models.transformer import TransformerConfig

Path = tuple[str, ...]

# ComfyUI's renames of original HunyuanVideo parameter names, in order. ComfyUI's loader is too
# large to fetch here; diffusion-pipe replicates it to read ComfyUI-saved models
# (tdrussell/diffusion-pipe models/hunyuan_video.py:166-177 at 8f83dbf, "the same way ComfyUI
# does"), and ComfyUI's model_lora_keys_unet (comfy/lora.py) undoes them for LoRA names.
COMFY_RENAMES = (
    ("txt_in.t_embedder.mlp.0.", "txt_in.t_embedder.in_layer."), ("txt_in.t_embedder.mlp.2.", "txt_in.t_embedder.out_layer."),
    ("txt_in.c_embedder.linear_1.", "txt_in.c_embedder.in_layer."), ("txt_in.c_embedder.linear_2.", "txt_in.c_embedder.out_layer."),
    ("_mod.linear.", "_mod.lin."), ("_attn_qkv.", "_attn.qkv."),
    ("mlp.fc1.", "mlp.0."), ("mlp.fc2.", "mlp.2."),
    ("_attn_q_norm.weight", "_attn.norm.query_norm.scale"), ("_attn_k_norm.weight", "_attn.norm.key_norm.scale"),
    (".q_norm.weight", ".norm.query_norm.scale"), (".k_norm.weight", ".norm.key_norm.scale"),
    ("_attn_proj.", "_attn.proj."),
    (".modulation.linear.", ".modulation.lin."),
    ("_in.mlp.2.", "_in.out_layer."), ("_in.mlp.0.", "_in.in_layer."),
)


def comfy_name(parameter: str) -> str:
    """ComfyUI's name of an original parameter (`double_blocks.0.img_mlp.fc1.weight` ->
    `double_blocks.0.img_mlp.0.weight`)."""
    for old, new in COMFY_RENAMES:
        parameter = parameter.replace(old, new)
    return parameter


@dataclasses.dataclass(frozen=True)
class Module:
    """One module of the original checkpoint: the rules of its weight and bias (None: absent)."""

    name: str
    weight: Rule | None
    bias: Rule | None


@dataclasses.dataclass(frozen=True)
class Piece:
    """What a name in a LoRA file refers to: a whole original module (regroup None), or piece
    `index` of a diffusers regroup of it (rows cut along the output axis)."""

    module: str
    scheme: str  # "original", "comfyui", "diffusers" or "kohya": the naming it was found in
    regroup: Regroup | None = None
    index: int = 0

    def rows(self) -> int | None:
        """The output rows of this piece when it is a cut of its module (else None)."""
        g = self.regroup
        return g.sizes[self.index] if g is not None and len(g.pieces) > 1 else None

    def expanded_rows(self, rows: int) -> int:
        """The module's output rows, for a piece of `rows` rows."""
        return sum(self.regroup.sizes) if self.rows() is not None else rows

    def expand(self, rows: np.ndarray) -> np.ndarray:
        """An array over this piece's output rows -> over the whole module's rows (zeros
        elsewhere; the final modulation's halves swapped back)."""
        g = self.regroup
        if g is None:
            return rows
        if len(g.pieces) == 1:
            return g.join([rows])
        blocks = [rows if j == self.index else np.zeros((n, *rows.shape[1:]), rows.dtype) for j, n in enumerate(g.sizes)]
        return g.join(blocks)


class LoraTable:
    """Name resolution for one model config; `shapes` are its parameters' shapes."""

    def __init__(self, config: TransformerConfig, shapes: Mapping[Path, tuple[int, ...]]):
        self.config = config
        rules = custom_rules(config) if isinstance(config, CustomTransformerConfig) else transformer_rules(config)
        missing = sorted({"/".join(s.path) for r in rules for s in r.targets if s.path not in shapes})
        if missing:
            raise ValueError(f"the model lacks parameters of its own name table ({missing[:3]} ...): "
                             "merge or remove LoRA adapters before applying LoRA files")
        self.shapes = dict(shapes)
        parts: dict[str, dict[str, Rule]] = {}
        for rule in rules:
            module, _, param = rule.source.rpartition(".")
            parts.setdefault(module, {})[param] = rule
        self.modules = {m: Module(m, p.get("weight"), p.get("bias")) for m, p in parts.items()}
        self.diffusers = {g.name.removesuffix(".weight"): g for g in diffusers_regroups(config)
                          if g.name.endswith(".weight") and g.name.removesuffix(".weight") in self.modules}
        self.dotted: dict[str, Piece] = {}
        self.kohya: dict[str, Piece] = {}
        for m in self.modules:
            self._add(self.dotted, m, Piece(m, "original"))
            self._add(self.kohya, m.replace(".", "_"), Piece(m, "kohya"))
            comfy = comfy_name(f"{m}.weight").removesuffix(".weight")  # a norm stays a full parameter name
            if comfy != m:
                self._add(self.dotted, comfy, Piece(m, "comfyui"))
                self._add(self.kohya, comfy.replace(".", "_"), Piece(m, "kohya"))
        for m, g in self.diffusers.items():
            for i, piece in enumerate(g.pieces):
                self._add(self.dotted, piece.removesuffix(".weight"), Piece(m, "diffusers", g, i))

    @staticmethod
    def _add(names: dict, name: str, piece: Piece) -> None:
        known = names.get(name)
        if known is not None and known.module != piece.module:
            raise AssertionError(f"LoRA name {name!r} would mean both {known.module} and {piece.module}")
        names.setdefault(name, piece)

    def slot_shapes(self, rule: Rule) -> list[tuple[int, ...]]:
        return [self.shapes[s.path][1:] if s.layer is not None else self.shapes[s.path] for s in rule.targets]
