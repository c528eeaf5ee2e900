"""The Hunyuan-DiT diffusion transformer ("DiT-g/2", hydit/modules/models.py:HunYuanDiT):
latents + bilingual-CLIP and mT5 text -> noise prediction (v-prediction) and learned variance.

Data flow: patch-embed the latent image; the text tokens are [CLIP states; mlp_t5(mT5 states)]
with every padded position replaced by a learned padding token; the conditioning vector is
t_embedder(t) + extra_embedder([attention-pooled raw mT5 states, (v1.0/1.1) sinusoidal
features of the image meta size and the style embedding]). The blocks run with long skip
connections: the outputs of the first depth/2 - 1 blocks feed, last first, the blocks after the
two middle ones. Final adaLN layer, unpatchify. Channels-last (B, H, W, C) in and out.
"""

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.hunyuan_dit.attention_pool import AttentionPool
from hyv_jax.models.hunyuan_dit.blocks import HunyuanDiTBlock
from hyv_jax.models.hunyuan_dit.rope import image_rope
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.embedding import Embedding
from hyv_jax.nn.mlp import MLP
from hyv_jax.nn.modulation import Modulation, modulate
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.params import make_param
from hyv_jax.nn.patch import PatchEmbed, patch_axes, patch_grid, unpatchify
from hyv_jax.nn.stack import scan_layers, stack_layers
from hyv_jax.nn.timestep import TimestepEmbedder, sinusoidal_features
from hyv_jax.parallel.plan import ParallelPlan

META_SIZE_FIELDS = 6  # original (w, h), target (w, h), crop top-left (x, y)
FREQ_DIM = 256


@dataclasses.dataclass(frozen=True)
class HunyuanDiTConfig:
    """Defaults are the released v1.2 model (DiT-g/2, hydit/config.py defaults); v1.0/v1.1 add
    the image meta size and style conditions (size_style_cond, configs/hunyuan_dit_v1_1.py)."""

    in_channels: int = 4
    patch_size: int = 2
    hidden_size: int = 1408
    heads: int = 16
    depth: int = 40
    mlp_ratio: float = 4.3637
    learn_sigma: bool = True
    text_states_dim: int = 1024  # bilingual CLIP (BERT) width
    text_len: int = 77
    text_states_dim_t5: int = 2048
    text_len_t5: int = 256
    pooler_heads: int = 8
    pooler_out_dim: int = 1024
    size_style_cond: bool = False  # upstream --size-cond / --use-style-cond (<= v1.1)
    rope_base_grid: int = 32  # rope_img "base512": 512 px / 8 (VAE) / 2 (patch)
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"
    attention_impl: str = "xla"
    remat: str = "none"  # a policy name of nn/remat.py, applied per scanned block (training)

    def __post_init__(self):
        if self.hidden_size % self.heads or (self.hidden_size // self.heads) % 4:
            raise ValueError(f"hidden_size {self.hidden_size} / heads {self.heads} must give a head dim divisible by 4 (2D RoPE)")
        if self.depth % 2 or self.depth < 4:
            raise ValueError(f"depth {self.depth} must be even and >= 4: the first depth/2 - 1 blocks feed as many skip blocks")
        if self.text_states_dim_t5 % self.pooler_heads:
            raise ValueError(f"text_states_dim_t5 {self.text_states_dim_t5} is not divisible by pooler_heads {self.pooler_heads}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def skip_blocks(self) -> int:
        """Blocks with a long skip input (layer > depth/2), as many as blocks feeding one."""
        return self.depth // 2 - 1

    @property
    def extra_in_dim(self) -> int:
        return self.pooler_out_dim + (META_SIZE_FIELDS * FREQ_DIM + self.hidden_size if self.size_style_cond else 0)

    @classmethod
    def from_mapping(cls, values: Mapping) -> "HunyuanDiTConfig":
        return from_mapping(cls, values, "transformer")


class FinalLayer(nnx.Module):
    """LayerNorm (no affine), adaLN shift/scale (upstream's order), linear to patch pixels."""

    def __init__(self, dim: int, patch: tuple[int, int], out_channels: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm_final = LayerNorm(dim, eps=1e-6, affine=False, rngs=rngs)
        self.linear = Dense(dim, (*patch, out_channels), in_axes=("embed",), out_axes=(*patch_axes(len(patch)), "channels"), **kw)
        self.adaLN_modulation = Modulation(dim, 2, **kw)

    def __call__(self, x: jax.Array, c: jax.Array) -> jax.Array:
        shift, scale = self.adaLN_modulation(c)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class HunyuanDiT(nnx.Module):
    def __init__(self, config: HunyuanDiTConfig, *, rngs: nnx.Rngs):
        self.config = c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        patch = (c.patch_size, c.patch_size)
        self.mlp_t5 = MLP(c.text_states_dim_t5, 4 * c.text_states_dim_t5, "silu_fp32", out_dim=c.text_states_dim,
                          in_axis="text_embed", out_axis="text_embed", **kw, rngs=rngs)
        self.text_embedding_padding = make_param(rngs, jax.nn.initializers.normal(1.0), (c.text_len + c.text_len_t5, c.text_states_dim),
                                                 ("text_positions", "text_embed"), kw["param_dtype"])
        self.pooler = AttentionPool(c.text_len_t5, c.text_states_dim_t5, c.pooler_heads, c.pooler_out_dim, **kw, rngs=rngs)
        self.style_embedder = Embedding(1, c.hidden_size, axis_name="styles", **kw, rngs=rngs) if c.size_style_cond else None
        self.x_embedder = PatchEmbed(patch, c.in_channels, c.hidden_size, **kw, rngs=rngs)
        self.t_embedder = TimestepEmbedder(c.hidden_size, freq_dim=FREQ_DIM, **kw, rngs=rngs)
        self.extra_embedder = MLP(c.extra_in_dim, 4 * c.hidden_size, "silu_fp32", out_dim=c.hidden_size, in_axis="cond_embed",
                                  **kw, rngs=rngs)
        block = (c.hidden_size, c.heads, c.mlp_hidden, c.text_states_dim)
        # upstream's blocks 0 .. depth/2 (no skip input), then depth/2 + 1 .. depth - 1 (skip input)
        self.blocks = stack_layers(lambda r: HunyuanDiTBlock(*block, skip=False, **kw, rngs=r), c.depth // 2 + 1, rngs)
        self.skip_blocks = stack_layers(lambda r: HunyuanDiTBlock(*block, skip=True, **kw, rngs=r), c.skip_blocks, rngs)
        self.final_layer = FinalLayer(c.hidden_size, patch, c.out_channels, **kw, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        text_states: jax.Array,
        text_mask: jax.Array,
        text_states_t5: jax.Array,
        text_mask_t5: jax.Array,
        image_meta_size: jax.Array | None = None,
        style: jax.Array | None = None,
        parallel: ParallelPlan | None = None,
    ) -> jax.Array:
        """Predicts (B, H, W, out_channels): the v-prediction in the first in_channels, the
        learned variance after them (learn_sigma).

        x: latents (B, H, W, in_channels); t: (B,) DDPM timesteps; text_states (B, text_len,
        text_states_dim) and text_mask (B, text_len): bilingual CLIP; text_states_t5 (B,
        text_len_t5, text_states_dim_t5) and text_mask_t5: mT5 encoder; image_meta_size (B, 6)
        and style (B,) int: only for size_style_cond models. parallel: pin activations to its
        mesh (batch over data/fsdp); None: as placed by jit.
        """
        c = self.config
        self._check_inputs(x, text_states, text_mask, text_states_t5, text_mask_t5, image_meta_size, style)
        dtype = jnp.dtype(c.dtype)
        pin = (lambda a, axes: a) if parallel is None else parallel.constrain
        grid = patch_grid(x.shape, (c.patch_size, c.patch_size))
        rope = image_rope(c.head_dim, grid, c.rope_base_grid)
        text = self.text_tokens(text_states.astype(dtype), text_mask, text_states_t5.astype(dtype), text_mask_t5)
        cond = self.condition(t, text_states_t5.astype(dtype), image_meta_size, style)
        h = pin(self.x_embedder(x.astype(dtype)), ("batch", None, "embed"))

        def first_half(block, h):
            h = pin(block(h, cond, text, rope, c.attention_impl), ("batch", None, "embed"))
            return h, h

        def second_half(block, h, skip):
            return pin(block(h, cond, text, rope, c.attention_impl, skip), ("batch", None, "embed"))

        h, outputs = scan_layers(self.blocks, h, first_half, remat_policy=c.remat, outputs=True)
        # block depth/2 + 1 + j takes the output of block depth/2 - 2 - j
        skips = jnp.flip(outputs[:c.skip_blocks], axis=0)
        h = scan_layers(self.skip_blocks, h, second_half, xs=skips, remat_policy=c.remat)
        out = self.final_layer(h, cond)
        return unpatchify(out, grid, (c.patch_size, c.patch_size))

    def text_tokens(self, text_states, text_mask, text_states_t5, text_mask_t5) -> jax.Array:
        """[CLIP states; mlp_t5(mT5 states)] (B, text_len + text_len_t5, text_states_dim) with
        padded positions (mask 0, wherever they are) replaced by the learned padding tokens."""
        tokens = jnp.concatenate([text_states, self.mlp_t5(text_states_t5)], axis=1)
        mask = jnp.concatenate([text_mask, text_mask_t5], axis=1).astype(bool)
        return jnp.where(mask[..., None], tokens, self.text_embedding_padding[...].astype(tokens.dtype)[None])

    def condition(self, t, text_states_t5, image_meta_size, style) -> jax.Array:
        """The conditioning vector (B, D): t_embedder(t) + extra_embedder(extra inputs)."""
        batch = text_states_t5.shape[0]
        extra = [self.pooler(text_states_t5)]
        if self.config.size_style_cond:
            sizes = sinusoidal_features(jnp.asarray(image_meta_size, jnp.float32).reshape(-1), FREQ_DIM)
            extra += [sizes.reshape(batch, META_SIZE_FIELDS * FREQ_DIM).astype(extra[0].dtype), self.style_embedder(style)]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        return self.t_embedder(t) + self.extra_embedder(jnp.concatenate(extra, axis=-1))

    def _check_inputs(self, x, text_states, text_mask, text_states_t5, text_mask_t5, image_meta_size, style):
        c = self.config
        if x.ndim != 4 or x.shape[-1] != c.in_channels:
            raise ValueError(f"latents must be (B, H, W, {c.in_channels}) channels-last, got {x.shape}")
        batch = x.shape[0]
        for name, states, mask, length, dim in (("text_states", text_states, text_mask, c.text_len, c.text_states_dim),
                                                ("text_states_t5", text_states_t5, text_mask_t5, c.text_len_t5, c.text_states_dim_t5)):
            if states.shape != (batch, length, dim):
                raise ValueError(f"{name} must be ({batch}, {length}, {dim}), got {states.shape}")
            if mask.shape != (batch, length):
                raise ValueError(f"the mask of {name} must be ({batch}, {length}), got {mask.shape}")
        if c.size_style_cond and (image_meta_size is None or style is None):
            raise ValueError("this model (size_style_cond, <= v1.1) needs image_meta_size (B, 6) and style (B,)")
        if not c.size_style_cond and (image_meta_size is not None or style is not None):
            raise ValueError("this model (>= v1.2) takes no image_meta_size or style; set size_style_cond for v1.0/v1.1 weights")
        if c.size_style_cond and (image_meta_size.shape != (batch, META_SIZE_FIELDS) or style.shape != (batch,)):
            raise ValueError(f"image_meta_size must be ({batch}, {META_SIZE_FIELDS}) and style ({batch},), "
                             f"got {image_meta_size.shape} and {style.shape}")
