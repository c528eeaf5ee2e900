"""The HunyuanVideo MMDiT ("HYVideo-T/2-cfgdistill"): latents + text -> velocity.

Data flow: patch-embed the latent video; condition vector vec = time_in(t) + vector_in(pooled
CLIP) [+ guidance_in(g)]; refine the LLM text states; `double_blocks` over (image, text);
`single_blocks` over [image; text]; final adaLN layer on the image tokens; unpatchify.
Inputs and outputs are channels-last (B, T, H, W, C).
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.config_dataclass import from_mapping
from hyv_jax.models.mmdit_blocks import DoubleStreamBlock, SingleStreamBlock
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
    """One forward's state after `prepare`: the token streams and what every block needs."""

    img: jax.Array  # (B, N, D) patch-embedded latents
    txt: jax.Array  # (B, L, D) refined text tokens
    vec: jax.Array  # (B, D) conditioning vector
    rope: tuple[jax.Array, jax.Array]  # cos, sin over the image tokens
    kv_lengths: jax.Array  # (B,) image + valid text tokens
    grid: tuple[int, int, int]  # patch grid (T, H, W)
    attend: Callable  # the joint attention (plain or context parallel)
    pin: Callable  # the activation sharding constraint (identity on one device)


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
    attention_impl: str = "xla"
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
    ) -> jax.Array:
        """Predicts the flow velocity (noise - x0).

        x: latents (B, T, H, W, C); t: (B,) timesteps sigma*1000; text_states: LLM states
        (B, L, text_states_dim) right-padded per `text_mask` (B, L); text_states_2: pooled CLIP
        (B, text_states_dim_2); guidance: (B,) embedded guidance scale * 1000 (distilled models).
        parallel: run on its mesh (activations pinned at block boundaries, context-parallel
        joint attention); None: as placed by jit.
        """
        s = self.prepare(x, t, text_states, text_mask, text_states_2, guidance, parallel)
        return self.velocity(s, self.single_stream_image(s, *self.double_stream(s, s.img, s.txt)))

    def prepare(self, x, t, text_states, text_mask, text_states_2, guidance=None, parallel=None) -> "Streams":
        """Checks the inputs; embeds latents, text and conditions (the forward's first stage)."""
        c = self.config
        self._check_inputs(x, text_states, text_mask, text_states_2, guidance)
        grid = patch_grid(x.shape, c.patch_size)
        vec, txt = self.embed_conditions(t, text_states, text_mask, text_states_2, guidance)
        img = self.img_in(x.astype(jnp.dtype(c.dtype)))
        kv_lengths = img.shape[1] + jnp.sum(text_mask.astype(jnp.int32), axis=1)
        attend, pin = self.runtime(parallel)
        rope = rope_tables(grid_positions(*grid), c.rope_axes_dims, c.rope_theta)
        return Streams(img, txt, vec, rope, kv_lengths, grid, attend, pin)

    def double_stream(self, s: "Streams", img, txt, start: int = 0):
        """The double blocks from `start` on over (image, text)."""
        return scan_layers(self.double_blocks, self._pin_streams(s, (img, txt)),
                           lambda block, carry: self._double_block(s, block, *carry), remat_policy=self.config.remat, start=start)

    def double_block(self, s: "Streams", img, txt, index: int):
        """Double block `index` alone over (image, text)."""
        return self._double_block(s, layer_at(self.double_blocks, index), img, txt)

    def _double_block(self, s: "Streams", block, img, txt):
        return self._pin_streams(s, block(img, txt, s.vec, s.rope, s.kv_lengths, s.attend))

    @staticmethod
    def _pin_streams(s: "Streams", streams):  # image tokens split over the context axes, text whole
        return s.pin(streams[0], ("batch", "sequence", "embed")), s.pin(streams[1], ("batch", None, "embed"))

    def single_stream_image(self, s: "Streams", img, txt) -> jax.Array:
        """The single blocks over [img; txt]; -> the image tokens (B, N, D) the final layer reads."""
        return self.single_stream(jnp.concatenate([img, txt], axis=1), s.vec, s.rope, txt.shape[1], s.kv_lengths, s.attend,
                                  s.pin)[:, :img.shape[1]]

    def velocity(self, s: "Streams", img) -> jax.Array:
        """The final layer on the image tokens, unpatchified: the predicted velocity."""
        return self.image_output(img, s.vec, img.shape[1], 0, s.grid)

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

    def single_stream_output(self, img, txt, vec, rope, kv_lengths, grid, attend, pin, n_skip: int = 0):
        """Single blocks over [img; txt], then the final layer on the image tokens after the
        first `n_skip` (HunyuanCustom's reference tokens), unpatchified to `grid`."""
        joint = self.single_stream(jnp.concatenate([img, txt], axis=1), vec, rope, txt.shape[1], kv_lengths, attend, pin)
        return self.image_output(joint, vec, img.shape[1], n_skip, grid)

    def single_stream(self, joint, vec, rope, n_txt: int, kv_lengths, attend, pin, blocks=None):
        """Single blocks (a stack of them; default all) over the joint [img; txt] tokens."""
        c = self.config
        cos, sin = rope
        # Text tokens carry no position: the identity rotation (cos 1, sin 0) for them.
        joint_rope = (
            jnp.concatenate([cos, jnp.ones((n_txt, c.head_dim), cos.dtype)]),
            jnp.concatenate([sin, jnp.zeros((n_txt, c.head_dim), sin.dtype)]),
        )
        joint_axes = ("batch", "sequence", "embed")
        return scan_layers(
            self.single_blocks if blocks is None else blocks, pin(joint, joint_axes),
            lambda block, h: pin(block(h, vec, joint_rope, kv_lengths, attend), joint_axes),
            remat_policy=c.remat,
        )

    def image_output(self, joint, vec, n_img: int, n_skip: int, grid):
        """The final layer on the image tokens [n_skip, n_img) of the joint tokens, unpatchified."""
        out = self.final_layer(joint[:, n_skip:n_img], vec)
        return unpatchify(out, grid, self.config.patch_size)

    def _check_inputs(self, x, text_states, text_mask, text_states_2, guidance):
        c = self.config
        if x.ndim != 5 or x.shape[-1] != c.in_channels:
            raise ValueError(f"latents must be (B, T, H, W, {c.in_channels}) channels-last, got {x.shape}")
        if text_states.ndim != 3 or text_states.shape[-1] != c.text_states_dim:
            raise ValueError(f"text_states must be (B, L, {c.text_states_dim}), got {text_states.shape}")
        if text_mask.shape != text_states.shape[:2]:
            raise ValueError(f"text_mask {text_mask.shape} must match text_states (B, L) {text_states.shape[:2]}")
        if text_states_2.shape != (x.shape[0], c.text_states_dim_2):
            raise ValueError(f"text_states_2 (pooled) must be ({x.shape[0]}, {c.text_states_dim_2}), got {text_states_2.shape}")
        if c.guidance_embed and guidance is None:
            raise ValueError("this model embeds guidance: pass guidance = embedded_cfg_scale * 1000 (e.g. 6000)")
