"""The HunyuanVideo MMDiT ("HYVideo-T/2-cfgdistill"): latents + text -> velocity.

Data flow: patch-embed the latent video; condition vector vec = time_in(t) + vector_in(pooled
CLIP) [+ guidance_in(g)]; refine the LLM text states; `double_blocks` over (image, text);
`single_blocks` over [image; text]; final adaLN layer on the image tokens; unpatchify.
Inputs and outputs are channels-last (B, T, H, W, C).
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.mmdit_blocks import DoubleStreamBlock, SingleStreamBlock
from hyv_jax.models.text_mask import check_text_mask
from hyv_jax.models.token_refiner import TokenRefiner
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.mlp import MLPEmbedder
from hyv_jax.nn.modulation import Modulation, modulate
from hyv_jax.nn.norms import LayerNorm
from hyv_jax.nn.patch import PatchEmbed, patch_grid, unpatchify
from hyv_jax.nn.rope import grid_positions, rope_tables
from hyv_jax.nn.stack import layer_at, scan_layers, stack_layers
from hyv_jax.nn.timestep import TimestepEmbedder
from hyv_jax.parallel.plan import ParallelPlan, single_device_attention


@dataclasses.dataclass(frozen=True)
class Streams:
    """One forward's state after `prepare`: the token streams and what every stage needs."""

    img: jax.Array  # (B, N, D) image tokens (HunyuanCustom: reference tokens, then the video's)
    txt: jax.Array  # (B, L, D) refined text tokens
    vec: jax.Array  # (B, D) conditioning vector
    rope: tuple[jax.Array, jax.Array]  # cos, sin over the image tokens
    joint_rope: tuple[jax.Array, jax.Array]  # the same over [image; text] (identity on text)
    kv_lengths: jax.Array  # (B,) image + valid text tokens
    grid: tuple[int, int, int]  # patch grid (T, H, W) of the video
    attend: Callable  # the joint attention (plain or context parallel)
    pin: Callable  # the activation sharding constraint (identity on one device)
    n_skip: int = 0  # leading image tokens the final layer drops (HunyuanCustom's references)
    extras: Any = None  # what a variant's hooks read (HunyuanCustom: audio tokens and strength)

    @property
    def n_img(self) -> int:
        return self.img.shape[1]


class ImageTokens(NamedTuple):
    """What the `image_tokens` hook returns."""

    tokens: jax.Array  # (B, N, D)
    positions: np.ndarray  # (N, 3) RoPE positions (t, h, w)
    n_skip: int = 0
    extras: Any = None


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Defaults are the released 13B text-to-video model."""

    in_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    hidden_size: int = 3072
    heads: int = 24
    mlp_ratio: float = 4.0
    mlp_act: str = "gelu_tanh"
    double_blocks: int = 20
    single_blocks: int = 40
    refiner_blocks: int = 2
    rope_axes_dims: tuple[int, int, int] = (16, 56, 56)
    rope_theta: float = 256.0
    text_states_dim: int = 4096
    text_states_dim_2: int = 768
    guidance_embed: bool = True
    dtype: str = "bfloat16"
    param_dtype: str = "bfloat16"
    attention_impl: str = "auto"  # see hyv_jax/attention: cudnn on GPU, splash on TPU, xla on CPU
    remat: str = "none"  # a policy name of nn/remat.py, applied per scanned block (training)

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        object.__setattr__(self, "rope_axes_dims", tuple(self.rope_axes_dims))
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by heads {self.heads}")
        if sum(self.rope_axes_dims) != self.head_dim:
            raise ValueError(f"rope_axes_dims {self.rope_axes_dims} must sum to the head dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.heads

    @classmethod
    def from_mapping(cls, values: Mapping) -> "TransformerConfig":
        return from_mapping(cls, values, "transformer")


class FinalLayer(nnx.Module):
    def __init__(self, dim: int, patch: tuple[int, int, int], out_channels: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm_final = LayerNorm(dim, eps=1e-6, affine=False, rngs=rngs)
        self.linear = Dense(dim, (*patch, out_channels), in_axes=("embed",), out_axes=("patch_t", "patch_h", "patch_w", "channels"), **kw)
        self.adaLN_modulation = Modulation(dim, 2, **kw)

    def __call__(self, x: jax.Array, vec: jax.Array) -> jax.Array:
        shift, scale = self.adaLN_modulation(vec)  # upstream order; diffusers stores (scale, shift)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class HunyuanVideoTransformer(nnx.Module):
    # the joint attention reads a text mask's sum as the text length: masks must be right-padded
    RIGHT_PADDED_TEXT = True

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        self.config = config
        c = config
        dtype, param_dtype = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
        kw = dict(dtype=dtype, param_dtype=param_dtype)
        block = (c.hidden_size, c.heads, c.mlp_ratio, c.mlp_act)
        self.img_in = PatchEmbed(c.patch_size, c.in_channels, c.hidden_size, **kw, rngs=rngs)
        self.txt_in = TokenRefiner(c.text_states_dim, c.hidden_size, c.heads, c.refiner_blocks, c.mlp_ratio, **kw, rngs=rngs)
        self.time_in = TimestepEmbedder(c.hidden_size, **kw, rngs=rngs)
        self.vector_in = MLPEmbedder(c.text_states_dim_2, c.hidden_size, in_axis="pooled_embed", **kw, rngs=rngs)
        self.guidance_in = TimestepEmbedder(c.hidden_size, **kw, rngs=rngs) if c.guidance_embed else None
        self.double_blocks = stack_layers(lambda r: DoubleStreamBlock(*block, **kw, rngs=r), c.double_blocks, rngs)
        self.single_blocks = stack_layers(lambda r: SingleStreamBlock(*block, **kw, rngs=r), c.single_blocks, rngs)
        self.final_layer = FinalLayer(c.hidden_size, c.patch_size, c.out_channels, **kw, rngs=rngs)

    def __call__(
        self,
        x: jax.Array,
        t: jax.Array,
        text_states: jax.Array,
        text_mask: jax.Array,
        text_states_2: jax.Array,
        guidance: jax.Array | None = None,
        parallel: ParallelPlan | None = None,
        **conditions,
    ) -> jax.Array:
        """Predicts the flow velocity (noise - x0).

        x: latents (B, T, H, W, C); t: (B,) timesteps sigma*1000; text_states: LLM states
        (B, L, text_states_dim) right-padded per `text_mask` (B, L); text_states_2: pooled CLIP
        (B, text_states_dim_2); guidance: (B,) embedded guidance scale * 1000 (distilled models).
        parallel: run on its mesh (activations pinned at block boundaries, context-parallel
        joint attention); None: as placed by jit. conditions: a variant's further inputs
        (HunyuanCustom: ref_latents, ...), read by its hooks.
        """
        s = self.prepare(x, t, text_states, text_mask, text_states_2, guidance, parallel, **conditions)
        img, txt = self.double_stream(s, s.img, s.txt)
        return self.velocity(s, self.single_stream(s, jnp.concatenate([img, txt], axis=1)))

    # -- stages (the forward above; the samplers' caches run them piecewise) --

    def prepare(self, x, t, text_states, text_mask, text_states_2, guidance=None, parallel=None, **conditions) -> Streams:
        """Checks the inputs; embeds latents, text and conditions."""
        c = self.config
        self._check_inputs(x, text_states, text_mask, text_states_2, guidance)
        grid = patch_grid(x.shape, c.patch_size)
        vec, txt = self.embed_conditions(t, text_states, text_mask, text_states_2, guidance)
        image = self.image_tokens(x.astype(jnp.dtype(c.dtype)), grid, **conditions)
        kv_lengths = image.tokens.shape[1] + jnp.sum(text_mask.astype(jnp.int32), axis=1)
        attend, pin = self.runtime(parallel)
        cos, sin = rope_tables(image.positions, c.rope_axes_dims, c.rope_theta)
        # Text tokens carry no position: the identity rotation (cos 1, sin 0) for them.
        n_txt = txt.shape[1]
        joint_rope = (np.concatenate([cos, np.ones((n_txt, c.head_dim), cos.dtype)]),
                      np.concatenate([sin, np.zeros((n_txt, c.head_dim), sin.dtype)]))
        return Streams(image.tokens, txt, vec, (cos, sin), joint_rope, kv_lengths, grid, attend, pin, image.n_skip, image.extras)

    def double_stream(self, s: Streams, img, txt, start: int = 0):
        """The double blocks from `start` on over (image, text)."""
        def step(block, carry, index):
            return self._double_block(s, block, *carry, index)

        return scan_layers(self.double_blocks, self._pin_streams(s, (img, txt)), step, xs=jnp.arange(self.config.double_blocks),
                           remat_policy=self.config.remat, start=start)

    def double_block(self, s: Streams, img, txt, index: int):
        """Double block `index` alone over (image, text)."""
        return self._double_block(s, layer_at(self.double_blocks, index), img, txt, index)

    def _double_block(self, s: Streams, block, img, txt, index):
        img, txt = block(img, txt, s.vec, s.rope, s.kv_lengths, s.attend)
        return self._pin_streams(s, (self.after_double_block(s, img, index), txt))

    @staticmethod
    def _pin_streams(s: Streams, streams):  # image tokens split over the context axes, text whole
        return s.pin(streams[0], ("batch", "sequence", "embed")), s.pin(streams[1], ("batch", None, "embed"))

    def single_stream(self, s: Streams, joint, start: int = 0, stop: int | None = None) -> jax.Array:
        """The single blocks [start, stop) over the joint [image; text] tokens."""
        axes = ("batch", "sequence", "embed")
        return scan_layers(
            self.single_blocks, s.pin(joint, axes),
            lambda block, h: s.pin(block(h, s.vec, s.joint_rope, s.kv_lengths, s.attend), axes),
            remat_policy=self.config.remat, start=start, stop=stop,
        )

    def velocity(self, s: Streams, tokens) -> jax.Array:
        """The final layer on the video's image tokens of `tokens` (B, >= N, D), unpatchified."""
        out = self.final_layer(tokens[:, s.n_skip:s.n_img], s.vec)
        return unpatchify(out, s.grid, self.config.patch_size)

    # -- hooks: what a variant (HunyuanCustom) changes --

    def image_tokens(self, x: jax.Array, grid: tuple[int, int, int]) -> ImageTokens:
        """The image token stream of latents x and its RoPE positions."""
        return ImageTokens(self.img_in(x), grid_positions(*grid))

    def after_double_block(self, s: Streams, img: jax.Array, index: jax.Array) -> jax.Array:
        """The image tokens after double block `index` (a traced layer index)."""
        return img

    # -- shared pieces --

    def runtime(self, parallel: ParallelPlan | None):
        """(attend, pin): the joint attention and the activation constraint to use, on one
        device (pin is a no-op) or on `parallel`'s mesh."""
        if parallel is None:
            return single_device_attention(self.config.attention_impl), lambda x, axes: x
        return parallel.attention_fn(self.config.attention_impl), parallel.constrain

    def embed_conditions(self, t, text_states, text_mask, text_states_2, guidance):
        """The conditioning vector vec (B, D) and the refined text tokens (B, L, D)."""
        c = self.config
        dtype = jnp.dtype(c.dtype)
        batch = text_states.shape[0]
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (batch,))
        vec = self.time_in(t) + self.vector_in(text_states_2.astype(dtype))
        if self.guidance_in is not None:
            # Upstream builds the guidance tensor in the model dtype: in bf16, 6000 -> 6016.
            g = jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), (batch,)).astype(dtype)
            vec = vec + self.guidance_in(g.astype(jnp.float32))
        return vec, self.txt_in(text_states.astype(dtype), t, text_mask, c.attention_impl)

    def _check_inputs(self, x, text_states, text_mask, text_states_2, guidance):
        c = self.config
        if x.ndim != 5 or x.shape[-1] != c.in_channels:
            raise ValueError(f"latents must be (B, T, H, W, {c.in_channels}) channels-last, got {x.shape}")
        if text_states.ndim != 3 or text_states.shape[-1] != c.text_states_dim:
            raise ValueError(f"text_states must be (B, L, {c.text_states_dim}), got {text_states.shape}")
        if 0 in x.shape[:4]:
            raise ValueError(f"latents (B, T, H, W) = {x.shape[:4]} are empty: give at least one video, frame and latent pixel")
        if text_mask.shape != text_states.shape[:2]:
            raise ValueError(f"text_mask {text_mask.shape} must match text_states (B, L) {text_states.shape[:2]}")
        check_text_mask(text_mask, batch=x.shape[0], right_padded=self.RIGHT_PADDED_TEXT)  # values too where concrete
        if text_states_2.shape != (x.shape[0], c.text_states_dim_2):
            raise ValueError(f"text_states_2 (pooled) must be ({x.shape[0]}, {c.text_states_dim_2}), got {text_states_2.shape}")
        if c.guidance_embed and guidance is None:
            raise ValueError("this model embeds guidance: pass guidance = embedded_cfg_scale * 1000 (e.g. 6000)")
