"""The two MMDiT block kinds of HunyuanVideo.

Double-stream blocks keep separate weights for image and text tokens and meet in one joint
attention; single-stream blocks process the concatenated sequence with one set of weights.
The joint sequence is always [image tokens, text tokens]; RoPE rotates image q/k only, and
padded text tokens are excluded as keys through `kv_lengths` (image + valid text). The joint
attention is the `attend(q, k, v, kv_lengths)` the caller passes (plain or context parallel).
Activations carry checkpoint names (nn/remat.py: q/k/v, attention output, MLP hidden) for the
remat presets, and each block and stage a `jax.named_scope` for profiles.
"""

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from hyv_jax.nn.dense import Dense
from hyv_jax.nn.mlp import MLP, activation
from hyv_jax.nn.modulation import Modulation, modulate
from hyv_jax.nn.norms import LayerNorm, RMSNorm
from hyv_jax.nn.remat import ATTENTION, KEY, MLP_HIDDEN, QUERY, VALUE
from hyv_jax.nn.rope import apply_rope


def project_qkv(qkv: Dense, q_norm: RMSNorm, k_norm: RMSNorm, x: jax.Array):
    """x (B, L, D) -> q, k, v (B, L, heads, head_dim), q and k RMS-normalised per head."""
    with jax.named_scope("qkv"):
        qkv_out = qkv(x)
        return (checkpoint_name(q_norm(qkv_out[:, :, 0]), QUERY), checkpoint_name(k_norm(qkv_out[:, :, 1]), KEY),
                checkpoint_name(qkv_out[:, :, 2], VALUE))


def joint_attention(attend, q, k, v, kv_lengths):
    with jax.named_scope("attention"):
        return checkpoint_name(attend(q, k, v, kv_lengths), ATTENTION)


class DoubleStreamBlock(nnx.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, mlp_act: str, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head_dim = dim // heads
        self.img_mod = Modulation(dim, 6, **kw)
        self.img_attn_qkv = Dense(dim, (3, heads, head_dim), in_axes=("embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.img_attn_q_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.img_attn_k_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.img_attn_proj = Dense((heads, head_dim), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)
        self.img_mlp = MLP(dim, int(dim * mlp_ratio), mlp_act, **kw)
        self.txt_mod = Modulation(dim, 6, **kw)
        self.txt_attn_qkv = Dense(dim, (3, heads, head_dim), in_axes=("embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.txt_attn_q_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.txt_attn_k_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.txt_attn_proj = Dense((heads, head_dim), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), **kw)
        self.txt_mlp = MLP(dim, int(dim * mlp_ratio), mlp_act, **kw)
        self.norm = LayerNorm(dim, eps=1e-6, affine=False, rngs=rngs)

    @jax.named_scope("double_block")
    def __call__(self, img, txt, vec, rope, kv_lengths, attend):
        img_shift1, img_scale1, img_gate1, img_shift2, img_scale2, img_gate2 = self.img_mod(vec)
        txt_shift1, txt_scale1, txt_gate1, txt_shift2, txt_scale2, txt_gate2 = self.txt_mod(vec)

        img_q, img_k, img_v = project_qkv(
            self.img_attn_qkv, self.img_attn_q_norm, self.img_attn_k_norm, modulate(self.norm(img), img_shift1, img_scale1)
        )
        img_q, img_k = apply_rope(img_q, *rope), apply_rope(img_k, *rope)
        txt_q, txt_k, txt_v = project_qkv(
            self.txt_attn_qkv, self.txt_attn_q_norm, self.txt_attn_k_norm, modulate(self.norm(txt), txt_shift1, txt_scale1)
        )

        joint = [jnp.concatenate(pair, axis=1) for pair in ((img_q, txt_q), (img_k, txt_k), (img_v, txt_v))]
        attn = joint_attention(attend, *joint, kv_lengths)
        n_img = img.shape[1]

        img = img + img_gate1 * self.img_attn_proj(attn[:, :n_img])
        txt = txt + txt_gate1 * self.txt_attn_proj(attn[:, n_img:])
        with jax.named_scope("mlp"):
            img = img + img_gate2 * self.img_mlp(modulate(self.norm(img), img_shift2, img_scale2))
            txt = txt + txt_gate2 * self.txt_mlp(modulate(self.norm(txt), txt_shift2, txt_scale2))
        return img, txt


class SingleStreamBlock(nnx.Module):
    """Upstream's `linear1` ([q | k | v | mlp]) and `linear2` ([attn, mlp] -> dim) are kept as
    two projections each, so the attention part shards over heads and the MLP part over `mlp`
    without slicing or concatenating activations; the converter splits and joins them."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, mlp_act: str, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        head_dim = dim // heads
        mlp_dim = int(dim * mlp_ratio)
        self.act = activation(mlp_act)
        self.modulation = Modulation(dim, 3, **kw)
        self.pre_norm = LayerNorm(dim, eps=1e-6, affine=False, rngs=rngs)
        self.linear1_qkv = Dense(dim, (3, heads, head_dim), in_axes=("embed",), out_axes=("qkv", "heads", "head_dim"), **kw)
        self.linear1_mlp = Dense(dim, mlp_dim, in_axes=("embed",), out_axes=("mlp",), **kw)
        self.q_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.k_norm = RMSNorm(head_dim, axis_name="head_dim", param_dtype=param_dtype, rngs=rngs)
        self.linear2_attn = Dense((heads, head_dim), dim, in_axes=("heads", "head_dim"), out_axes=("embed",), use_bias=False, **kw)
        self.linear2_mlp = Dense(mlp_dim, dim, in_axes=("mlp",), out_axes=("embed",), **kw)

    @jax.named_scope("single_block")
    def __call__(self, x, vec, rope, kv_lengths, attend):
        """x (B, L, D) = [image; text]; rope tables cover all L tokens (identity on text)."""
        shift, scale, gate = self.modulation(vec)
        x_mod = modulate(self.pre_norm(x), shift, scale)
        q, k, v = project_qkv(self.linear1_qkv, self.q_norm, self.k_norm, x_mod)
        attn = joint_attention(attend, apply_rope(q, *rope), apply_rope(k, *rope), v, kv_lengths)
        with jax.named_scope("mlp"):
            mlp = self.linear2_mlp(checkpoint_name(self.act(self.linear1_mlp(x_mod)), MLP_HIDDEN))
        return x + gate * (self.linear2_attn(attn) + mlp)
