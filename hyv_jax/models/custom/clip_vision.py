"""The CLIP ViT vision tower of LLaVA (ViT-L/14-336 in HunyuanCustom's llava-llama-3-8b) and the
LLaVA projector: an image -> one embedding per patch in the text model's width.

LLaVA reads hidden state `feature_layer` (-2: the output of the second-to-last layer; the last
layer and the post-LayerNorm are unused) and drops the CLS token ("default" strategy): a
336x336 image gives 24x24 = 576 tokens. Layout: images (B, H, W, 3) channels-last, normalised.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.encoder_layer import EncoderLayer
from hyv_jax.nn.mlp import activation
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.params import make_param, zeros
from hyv_jax.nn.stack import scan_layers, stack_layers


@dataclasses.dataclass(frozen=True)
class ClipVisionConfig:
    """Defaults: CLIP ViT-L/14-336 with LLaVA's projector to Llama-3-8B's width."""

    image_size: int = 336
    patch_size: int = 14
    dim: int = 1024
    heads: int = 16
    layers: int = 24  # in the checkpoint; layers after feature_layer are not built
    mlp_dim: int = 4096
    act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    feature_layer: int = -2
    text_dim: int = 4096  # projector output
    projector_act: str = "gelu"
    dtype: str = "float16"
    param_dtype: str = "float16"

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not -self.layers - 1 <= self.feature_layer < 0:
            raise ValueError(f"feature_layer {self.feature_layer} must index the {self.layers + 1} hidden states from the end")

    @property
    def used_layers(self) -> int:
        """Layers run to reach hidden state `feature_layer` (state 0 is the embedding)."""
        return self.layers + 1 + self.feature_layer

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_mapping(cls, values: Mapping) -> "ClipVisionConfig":
        return from_mapping(cls, values, "vision")


class ClipVisionTower(nnx.Module):
    def __init__(self, config: ClipVisionConfig, *, rngs: nnx.Rngs):
        c = config
        dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        self.config = config
        p = c.patch_size
        self.patch_embedding = Dense((p, p, 3), c.dim, in_axes=("patch_h", "patch_w", "channels"), out_axes=("embed",),
                                     use_bias=False, **kw, rngs=rngs)
        self.class_embedding = make_param(rngs, zeros, (c.dim,), ("embed",), param_dtype)
        self.position_embedding = make_param(rngs, zeros, (c.patches + 1, c.dim), ("vision_tokens", "embed"), param_dtype)
        self.pre_layrnorm = LayerNorm(c.dim, eps=c.layer_norm_eps, param_dtype=param_dtype, rngs=rngs)  # upstream's spelling
        self.layers = stack_layers(
            lambda r: EncoderLayer(c.dim, c.heads, c.mlp_dim, c.act, eps=c.layer_norm_eps, **kw, rngs=r), c.used_layers, rngs
        ) if c.used_layers else None

    def __call__(self, images: jax.Array) -> jax.Array:
        """(B, S, S, 3) normalised images -> (B, patches, dim) features of `feature_layer`, no CLS."""
        c = self.config
        s, p = c.image_size, c.patch_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3):
            raise ValueError(f"images must be (B, {s}, {s}, 3) channels-last, CLIP-normalised; got {images.shape}")
        b, g = images.shape[0], s // p
        patches = images.astype(jnp.dtype(c.dtype)).reshape(b, g, p, g, p, 3).transpose(0, 1, 3, 2, 4, 5)
        tokens = self.patch_embedding(patches.reshape(b, g * g, p, p, 3))
        cls = jnp.broadcast_to(self.class_embedding[...].astype(tokens.dtype), (b, 1, c.dim))
        h = jnp.concatenate([cls, tokens], axis=1) + self.position_embedding[...].astype(tokens.dtype)
        h = self.pre_layrnorm(h)
        if self.layers is not None:
            h = scan_layers(self.layers, h, lambda layer, x: layer(x))
        return h[:, 1:]


class LlavaProjector(nnx.Module):
    """LLaVA's `multi_modal_projector`: linear_1 -> GELU -> linear_2, vision width -> text width."""

    def __init__(self, config: ClipVisionConfig, *, rngs: nnx.Rngs):
        c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype), rngs=rngs)
        self.act = activation(c.projector_act)
        self.linear_1 = Dense(c.dim, c.text_dim, in_axes=("vision_embed",), out_axes=("text_embed",), **kw)
        self.linear_2 = Dense(c.text_dim, c.text_dim, in_axes=("text_embed",), out_axes=("text_embed",), **kw)

    def __call__(self, features: jax.Array) -> jax.Array:
        return self.linear_2(self.act(self.linear_1(features)))


class LlavaImageEncoder(nnx.Module):
    """Image -> the embeddings that replace LLaVA's `<image>` token: (B, patches, text_dim)."""

    def __init__(self, config: ClipVisionConfig, *, rngs: nnx.Rngs):
        self.vision_tower = ClipVisionTower(config, rngs=rngs)
        self.multi_modal_projector = LlavaProjector(config, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.multi_modal_projector(self.vision_tower(images))
