"""Reading a HunyuanVideo LoRA file in any of the circulating formats into the neutral form
(hyv_jax/lora/terms.py): per parameter of our model, factors with their effective scale or full
deltas. Every key is accounted for.

Formats (confirmed against the code that writes and reads them):
- diffusers / PEFT: `transformer.<diffusers module>.lora_A.weight` (r, in) / `.lora_B.weight`
  (out, r), optional `.lora_B.bias`; scale lora_alpha / r from the safetensors header
  `lora_adapter_metadata` (LoraConfig fields, with rank_pattern / alpha_pattern / use_rslora),
  else 1: without alphas diffusers sets lora_alpha = r (diffusers 0.42.1
  utils/peft_utils.py:158, 169-174).
- original names, `transformer.` prefix (diffusion-pipe): scale 1; diffusion-pipe forces
  alpha = rank (tdrussell/diffusion-pipe train.py:118-122, models/hunyuan_video.py:343-346).
- original names, `diffusion_model.` prefix (musubi `convert_lora.py --target other`, ComfyUI):
  scale 1; musubi multiplies both factors by sqrt(alpha / rank) when it writes them
  (kohya-ss/musubi-tuner src/musubi_tuner/convert_lora.py:163-168 at 30c658c) and ComfyUI
  reads them with alpha None -> 1 (comfy/weight_adapter/lora.py).
- kohya / musubi: `lora_unet_<name with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`;
  scale alpha / rank (musubi networks/lora.py:93-94; alpha 0 means rank there). musubi trains
  with alpha 1 by default (networks/lora.py:417-418), so a rank-32 file read without its alpha
  is 32x too strong. No alpha key: scale 1, as musubi merges it (utils/lora_utils.py:172).
- ComfyUI native (Flux-style) names (`img_attn.qkv`, `img_mlp.0`, `img_mod.lin`) with
  lora_up/lora_down or lora_A/lora_B, optional `.alpha` (alpha / rank, else 1), `.diff` full
  weight deltas and `.diff_b` bias deltas (ComfyUI's LoRA extract node writes these).

diffusers' own reader of original keys (loaders/lora_conversion_utils.py
_convert_hunyuan_video_lora_to_diffusers) splits `linear1` at a hard-coded width 3072 (:1648),
cuts the refiner's `self_attn_qkv` lora_A into rank thirds (:1614-1619) and swaps the rank halves
of the final modulation's lora_A with its output halves (:1597-1601); here every module goes
through the converter's own rules, so those read exactly.

Refused with the reason: LoRAs of the HunyuanVideo-I2V model (official trainer prefix
`Hunyuan_video_I2V_lora_`, or an img_in of 2C+1 input channels), LoHa / LoKr / DoRA / LoCon-mid
adapters, and any key that maps to no parameter (unless skip_unknown, which warns with every
skipped key).
"""

import dataclasses
import json
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyv_jax.convert.checkpoint_source import open_checkpoint
from hyv_jax.convert.safetensors_io import SafetensorsFile
from hyv_jax.lora.table import LoraTable, Piece
from hyv_jax.lora.terms import Full, LowRank, LoraUpdates, Target, Term

# HunyuanVideo-I2V's trainer names its kohya keys after this prefix
# (Tencent-Hunyuan/HunyuanVideo-I2V train_image2video_lora.py:753, hyvideo/utils/train_utils.py:425-443).
I2V_PREFIX = "Hunyuan_video_I2V_lora"
ROLES = ((".lora_A.weight", "down"), (".lora_down.weight", "down"), (".lora_B.weight", "up"), (".lora_up.weight", "up"),
         (".lora_B.bias", "up_bias"), (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff"))
PREFIXES = ("transformer.", "diffusion_model.")
KOHYA_PREFIX = "lora_unet_"
UNSUPPORTED = {"hada_w": "LoHa", "lokr_w": "LoKr", ".lora_mid.": "LoCon with a mid (Tucker) factor",
               "dora_scale": "DoRA", "lora_magnitude_vector": "DoRA"}
PEFT_METADATA = "lora_adapter_metadata"  # diffusers loaders/lora_base.py:65
PEFT_COMPONENT = "transformer."


class LoraFormatError(ValueError):
    pass


def _listing(keys, limit: int = 10) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _refuse_i2v(path, why: str):
    raise LoraFormatError(f"{path} is a LoRA of HunyuanVideo-I2V ({why}): the image-to-video model's weights differ from "
                          "the text-to-video and HunyuanCustom models hyv_jax runs, so its deltas do not apply here")


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file {path} does not exist (give a .safetensors or .pt file)")
    metadata = SafetensorsFile(path).metadata if path.suffix == ".safetensors" else {}
    return open_checkpoint(path), metadata


def _split_role(key: str) -> tuple[str | None, str]:
    for suffix, role in ROLES:
        if key.endswith(suffix):
            return role, key[: -len(suffix)]
    return None, key


def _resolve(table: LoraTable, name: str) -> tuple[Piece | None, str]:
    """The piece a file's module name refers to, and the name without its prefix."""
    if name.startswith(KOHYA_PREFIX):
        bare = name[len(KOHYA_PREFIX):]
        return table.kohya.get(bare), bare
    for prefix in PREFIXES:
        if name.startswith(prefix):
            bare = name[len(prefix):]
            return table.dotted.get(bare), bare
    return table.dotted.get(name), name


def _peft_scale(config: Mapping, module: str, rank: int, key: str) -> float:
    """PEFT's scaling for `module`: patterns match a dotted suffix of the module name
    (peft utils/other.py get_pattern_key); lora_alpha / r, or / sqrt(r) with use_rslora."""
    def pick(patterns, default):
        for pattern, value in (patterns or {}).items():
            if re.match(rf"(.*\.)?({pattern})$", module):
                return value
        return default

    r = pick(config.get("rank_pattern"), config.get("r", rank))
    alpha = pick(config.get("alpha_pattern"), config.get("lora_alpha", r))
    if r != rank:
        raise LoraFormatError(f"{key}: rank {rank}, but the file's {PEFT_METADATA} says r={r} for {module}")
    return float(alpha) / (math.sqrt(r) if config.get("use_rslora") else r)


def _f32(a) -> np.ndarray:
    return np.asarray(a).astype(np.float32)


class _Collector:
    """Original-module changes -> terms of our parameters, through the converter's rules."""

    def __init__(self, table: LoraTable, path: Path):
        self.table, self.path = table, path
        self.terms: dict[Target, list[Term]] = {}

    def _put(self, slot, term: Term) -> None:
        self.terms.setdefault((slot.path, slot.layer), []).append(term)

    def low_rank(self, module: str, down: np.ndarray, up: np.ndarray, scale: float, keys: list[str]) -> None:
        rule = self.table.modules[module].weight
        if rule is None or not hasattr(rule.transform, "factors_to_jax"):
            raise LoraFormatError(f"{self.path}: {keys[0]} holds LoRA factors for {module}, which is not a linear layer")
        shapes = self.table.slot_shapes(rule)
        torch_shape = rule.transform.torch_shape(shapes)
        n_in = math.prod(torch_shape[1:])
        self._check_i2v(module, down.shape[1], n_in, keys)
        if up.shape[0] != torch_shape[0] or down.shape[1] != n_in:
            raise LoraFormatError(f"{self.path}: {_listing(keys)}: factors {down.shape} / {up.shape} do not fit {module} "
                                  f"of this model ({torch_shape[0]} outputs, {n_in} inputs); is it a LoRA of another model size?")
        for slot, (d, u) in zip(rule.targets, rule.transform.factors_to_jax(down, up, shapes), strict=True):
            self._put(slot, LowRank(np.ascontiguousarray(d), np.ascontiguousarray(u), scale))

    def _check_i2v(self, module: str, size: int, expected: int, keys: list[str]) -> None:
        """HunyuanVideo-I2V's latent_concat model reads 2C+1 channels in img_in (latents, image
        latents, mask: HunyuanVideo-I2V hyvideo/inference.py:260-261)."""
        c = self.table.config.in_channels
        if module == "img_in.proj" and size != expected and size * c == expected * (2 * c + 1):
            _refuse_i2v(self.path, f"{keys[0]} reads 2C+1 = {2 * c + 1} latent channels in img_in")

    def full(self, module: str, param: str, load, size: int, keys: list[str]) -> None:
        rule = getattr(self.table.modules[module], param)
        if rule is None:
            raise LoraFormatError(f"{self.path}: {keys[0]} changes {module}.{param}, which this model does not have")
        shapes = self.table.slot_shapes(rule)
        torch_shape = tuple(rule.transform.torch_shape(shapes))
        if param == "weight":
            self._check_i2v(module, size // torch_shape[0], math.prod(torch_shape[1:]), keys)
        if size != math.prod(torch_shape):
            raise LoraFormatError(f"{self.path}: {keys[0]} has {size} values; {module}.{param} of this model has "
                                  f"{math.prod(torch_shape)} {torch_shape}")
        for j, slot in enumerate(rule.targets):
            self._put(slot, Full(lambda j=j: rule.transform.to_jax(load().reshape(torch_shape), shapes)[j]))


@dataclasses.dataclass
class _Factors:
    """One low-rank change of an original module: down (r, in), up (out, r), its scale and keys."""

    down: np.ndarray
    up: np.ndarray
    scale: float
    keys: list[str]

    def join(self, others: list["_Factors"]) -> None:
        """Adds itself to `others`, into one with the same down and scale if there is one: the
        q, k, v pieces of diffusers' split fused qkv share their A, so they are one term again."""
        same = next((o for o in others if o.scale == self.scale and np.array_equal(o.down, self.down)), None)
        if same is None:
            others.append(self)
        else:  # the pieces' rows are disjoint: their sum is their join
            same.up, same.keys = same.up + self.up, same.keys + self.keys


def _open_checked(path: Path):
    """(tensor source, PEFT LoraConfig fields or None); refuses I2V and non-LoRA adapters."""
    source, metadata = _open(path)
    keys = source.keys()
    if not keys:
        raise LoraFormatError(f"{path} holds no tensors")
    if any(k.startswith(I2V_PREFIX) for k in keys):
        _refuse_i2v(path, f"its keys carry the {I2V_PREFIX}_ prefix of the official I2V trainer")
    for marker, kind in UNSUPPORTED.items():
        found = [k for k in keys if marker in k]
        if found:
            raise LoraFormatError(f"{path} is a {kind} adapter ({found[0]}); only plain LoRA (down/up factors, "
                                  ".diff, .diff_b) is supported: merge it into a LoRA or a checkpoint with its own tool")
    peft = json.loads(metadata[PEFT_METADATA]) if metadata.get(PEFT_METADATA) else None
    if peft and any(k.startswith(PEFT_COMPONENT) for k in peft):
        # a pipeline's save_lora_weights prefixes the LoraConfig fields with the component
        # (diffusers loaders/lora_base.py:1105), load_lora_adapter strips it (loaders/peft.py:211-212)
        peft = {k[len(PEFT_COMPONENT):]: v for k, v in peft.items() if k.startswith(PEFT_COMPONENT)}
    if peft and peft.get("use_dora"):
        raise LoraFormatError(f"{path}: its {PEFT_METADATA} says use_dora; DoRA adapters are not supported")
    return source, peft


def _group_keys(keys, table: LoraTable):
    """({file module name: (piece, name without prefix, {role: key})}, unknown keys, namings found)."""
    groups, unknown, schemes = {}, [], set()
    for key in keys:
        role, name = _split_role(key)
        piece, bare = _resolve(table, name) if role else (None, name)
        if piece is None:
            unknown.append(key)
            continue
        groups.setdefault(name, (piece, bare, {}))[2][role] = key
        prefix = next((p for p in PREFIXES if name.startswith(p)), "")
        schemes.add(piece.scheme + (f" ({prefix.rstrip('.')})" if prefix and piece.scheme != "diffusers" else ""))
    return groups, unknown, schemes


def _check_roles(path: Path, name: str, roles: Mapping[str, str]) -> None:
    if ("down" in roles) != ("up" in roles):
        have, missing = ("down", "up") if "down" in roles else ("up", "down")
        raise LoraFormatError(f"{path}: {roles[have]} has no matching {missing} factor")
    if "diff" in roles and "down" in roles:
        raise LoraFormatError(f"{path}: {name} has both LoRA factors and a .diff full delta")
    if ("alpha" in roles or "up_bias" in roles) and "down" not in roles:
        raise LoraFormatError(f"{path}: {roles.get('alpha') or roles.get('up_bias')} has no LoRA factors with it")


def _check_rows(path: Path, key: str, rows: int, piece: Piece, bare: str) -> None:
    """A diffusers piece must have the rows its cut of the original module has."""
    expected = piece.rows()
    if expected is not None and rows != expected:
        raise LoraFormatError(f"{path}: {key} has {rows} outputs; {bare} of this model has {expected}")


def _factors(source, path: Path, piece: Piece, bare: str, roles: Mapping[str, str], peft) -> _Factors:
    """The low-rank change of a file module over its whole original module, with its scale."""
    down, up = _f32(source.get(roles["down"])), _f32(source.get(roles["up"]))
    rank = down.shape[0]
    if up.ndim < 2 or up.shape[1] != rank or any(n != 1 for n in up.shape[2:]):
        raise LoraFormatError(f"{path}: {roles['up']} {up.shape} does not pair with {roles['down']} {down.shape}")
    _check_rows(path, roles["up"], up.shape[0], piece, bare)
    if "alpha" in roles:
        alpha = float(_f32(source.get(roles["alpha"])).reshape(-1)[0])
        scale = (alpha or rank) / rank  # alpha 0: no scaling (musubi networks/lora.py:93)
    elif peft is not None:
        scale = _peft_scale(peft, bare, rank, roles["down"])
    else:
        scale = 1.0
    return _Factors(down.reshape(rank, -1), piece.expand(up.reshape(up.shape[0], rank)), scale, list(roles.values()))


def read_lora(path: str | Path, table: LoraTable, *, skip_unknown: bool = False) -> LoraUpdates:
    """The changes one LoRA file makes to the model `table` describes. Raises LoraFormatError
    naming the keys that map to no parameter, or (skip_unknown) warns with all of them."""
    path = Path(path)
    source, peft = _open_checked(path)
    groups, unknown, schemes = _group_keys(source.keys(), table)
    if unknown and not skip_unknown:
        raise LoraFormatError(f"{path}: {len(unknown)} keys map to no parameter of this model: {_listing(unknown)} "
                              "(a LoRA of another model, or of a text encoder?); skip them explicitly with skip_unknown / "
                              "--lora-skip-unknown")
    if unknown:
        warnings.warn(f"{path}: skipped {len(unknown)} keys that map to no parameter: {', '.join(sorted(unknown))}", stacklevel=2)
    if not groups:
        raise LoraFormatError(f"{path}: no key maps to this model")

    collector = _Collector(table, path)
    low_rank: dict[str, list[_Factors]] = {}  # original module -> its low-rank changes
    for name, (piece, bare, roles) in groups.items():
        _check_roles(path, name, roles)
        if "down" in roles:
            factors = _factors(source, path, piece, bare, roles, peft)
            factors.join(low_rank.setdefault(piece.module, []))
            if "up_bias" in roles:  # PEFT's lora_B bias is scaled with the layer
                bias = factors.scale * piece.expand(_f32(source.get(roles["up_bias"])))
                collector.full(piece.module, "bias", lambda b=bias: b, bias.size, [roles["up_bias"]])
        for role, param in (("diff", "weight"), ("diff_b", "bias")):
            if role in roles:
                key = roles[role]
                shape = source.shape(key)
                rows = shape[0] if shape else 1
                _check_rows(path, key, rows, piece, bare)

                def load(key=key, piece=piece, rows=rows):
                    return piece.expand(_f32(source.get(key)).reshape(rows, -1)).reshape(-1)

                collector.full(piece.module, param, load, math.prod(shape) // rows * piece.expanded_rows(rows), [key])
    for module, changes in low_rank.items():
        for f in changes:
            collector.low_rank(module, f.down, f.up, f.scale, f.keys)
    return LoraUpdates(str(path), " + ".join(sorted(schemes)), collector.terms, tuple(sorted(unknown)))
