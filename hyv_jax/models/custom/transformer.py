"""The HunyuanCustom DiT: HunyuanVideo's MMDiT (without embedded guidance) plus

- identity: reference latents go through the same `img_in` and are prepended to the video
  tokens with the "timecat-w" RoPE; they share the modulation, are never noised, and are
  dropped before the final layer;
- video condition (editing checkpoint): `bg_proj(bg_in(bg_latents))` is added to the video
  tokens right after `img_in`;
- audio (audio checkpoint): AudioProjNet2 turns Whisper windows into tokens per video frame;
  after double blocks `audio_insert_after` the video tokens of each latent frame cross-attend to
  their frame's audio tokens, and the result times `audio_strength` is added.

The parameters of the base model keep HunyuanVideo's names, so its conversion table applies.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hyv_jax.models.custom.audio_adapter import AudioProjNet2, PerceiverAttentionCA, frame_audio_tokens
from hyv_jax.models.custom.reference_rope import timecat_w_positions
from hyv_jax.models.transformer import HunyuanVideoTransformer, ImageTokens, Streams, TransformerConfig
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.patch import PatchEmbed
from hyv_jax.nn.stack import stack_layers


@dataclasses.dataclass(frozen=True)
class CustomTransformerConfig(TransformerConfig):
    """Defaults: the released `hunyuancustom_720P` (identity) layout; the audio and editing
    checkpoints set `audio_condition` / `video_condition`."""

    guidance_embed: bool = False
    video_condition: bool = False
    audio_condition: bool = False
    audio_insert_after: tuple[int, ...] = (1, 3, 5, 7, 9, 11)  # double-block indices, 0-based
    audio_window: int = 10  # Whisper frames per video frame
    audio_states: int = 5  # stacked Whisper hidden states
    audio_channels: int = 384  # Whisper-tiny width
    audio_hidden: int = 1024  # AudioProjNet2 intermediate width
    audio_tokens: int = 4  # tokens per video frame
    audio_attention_dim: int = 1024  # PerceiverAttentionCA inner width (one head)
    # Several reference images (times -1, -2, ...): the released weights were trained with one.
    experimental_multi_reference: bool = False

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "audio_insert_after", tuple(self.audio_insert_after))


class HunyuanCustomTransformer(HunyuanVideoTransformer):
    # upstream's conditional text mask has ones after its padding (llava_fusion.pipeline_mask);
    # the attention reads only its sum, the token refiner its positions, as upstream does
    RIGHT_PADDED_TEXT = False

    def __init__(self, config: CustomTransformerConfig, *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        c = config
        kw = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
        video, audio = c.video_condition, c.audio_condition
        self.bg_in = PatchEmbed(c.patch_size, 2 * c.in_channels, c.hidden_size, **kw, rngs=rngs) if video else None
        self.bg_proj = Dense(c.hidden_size, c.hidden_size, in_axes=("embed",), out_axes=("embed",), **kw, rngs=rngs) if video else None
        self.audio_proj = AudioProjNet2(
            c.audio_window, c.audio_states, c.audio_channels, c.audio_hidden, c.audio_tokens, c.hidden_size, **kw, rngs=rngs
        ) if audio else None
        self.audio_models = stack_layers(
            lambda r: PerceiverAttentionCA(c.hidden_size, c.audio_attention_dim, **kw, rngs=r), len(c.audio_insert_after), rngs
        ) if audio else None

    def __call__(self, x, t, text_states, text_mask, text_states_2, guidance=None, parallel=None, *, ref_latents: jax.Array,
                 bg_latents: jax.Array | None = None, audio_prompts: jax.Array | None = None, audio_strength=1.0) -> jax.Array:
        """Predicts the flow velocity of the video latents (the base forward; these hooks add the
        conditions).

        x (B, T, H, W, C) and ref_latents (B, R, H, W, C) channels-last (R reference frames,
        1 for the released weights); t (B,); text_states (B, L, text_dim), text_mask (B, L)
        (only its sum per row delimits the valid text in the joint attention; the token refiner
        reads it position by position, as upstream); text_states_2 (B, pooled_dim); guidance:
        None (no guidance embedding); bg_latents (B, T, H, W, 2C) = [masked video; mask video]
        latents; audio_prompts (B, 4(T-1)+1, window, states, channels) Whisper windows per video
        frame; audio_strength: scalar; parallel: as for the base transformer.
        """
        return super().__call__(x, t, text_states, text_mask, text_states_2, guidance, parallel, ref_latents=ref_latents,
                                bg_latents=bg_latents, audio_prompts=audio_prompts, audio_strength=audio_strength)

    def image_tokens(self, x, grid, *, ref_latents, bg_latents=None, audio_prompts=None, audio_strength=1.0) -> ImageTokens:
        """[reference tokens; video tokens (+ the video condition)] at the "timecat-w" positions;
        the audio tokens per latent frame for `after_double_block`."""
        self._check_conditions(x, ref_latents, bg_latents, audio_prompts)
        dtype = jnp.dtype(self.config.dtype)
        img = self.img_in(x)
        if bg_latents is not None:
            img = img + self.bg_proj(self.bg_in(bg_latents.astype(dtype)))
        ref = self.img_in(ref_latents.astype(dtype))
        audio = None
        if audio_prompts is not None:
            audio = (frame_audio_tokens(self.audio_proj(audio_prompts.astype(dtype)), grid[0]), audio_strength)
        return ImageTokens(jnp.concatenate([ref, img], axis=1), timecat_w_positions(grid, ref_latents.shape[1]), ref.shape[1],
                           audio)

    def after_double_block(self, s: Streams, img, index):
        """After the double blocks `audio_insert_after`, the video tokens of each latent frame
        cross-attend to their frame's audio tokens; the result times the strength is added (the
        reference tokens get none). The audio layer's weights are picked from its stack by slot."""
        if s.extras is None:
            return img
        audio, strength = s.extras
        slot = jnp.asarray(self._audio_slots())[index]
        graphdef, stacked = nnx.split(self.audio_models)

        def add_audio(img):
            layer = nnx.merge(graphdef, jax.tree.map(lambda a: a[slot], stacked))
            b, _, d = img.shape
            video = img[:, s.n_skip:].reshape(b, audio.shape[1], -1, d)
            out = layer(audio, video).reshape(b, -1, d)
            return jnp.concatenate([img[:, :s.n_skip], img[:, s.n_skip:] + out * strength], axis=1)

        return jax.lax.cond(slot >= 0, add_audio, lambda img: img, img)

    def _audio_slots(self) -> np.ndarray:
        """Per double block, the index of the audio layer applied after it, or -1."""
        slots = np.full(self.config.double_blocks, -1, np.int32)
        for k, layer in enumerate(self.config.audio_insert_after):
            if layer < len(slots):
                slots[layer] = k
        return slots

    def _check_conditions(self, x, ref_latents, bg_latents, audio_prompts):
        c = self.config
        b, t, h, w, ch = x.shape
        if ref_latents is None or ref_latents.ndim != 5 or (ref_latents.shape[0], *ref_latents.shape[2:]) != (b, h, w, ch):
            raise ValueError(
                f"ref_latents must be (B, R, H, W, C) = ({b}, R, {h}, {w}, {ch}) like the latents {x.shape}: the VAE latent "
                f"of the reference image padded to the video's size, got {None if ref_latents is None else ref_latents.shape}"
            )
        if ref_latents.shape[1] > 1 and not c.experimental_multi_reference:
            raise ValueError(
                f"{ref_latents.shape[1]} reference frames given; the released weights were trained with one. "
                "Set transformer.experimental_multi_reference=True to try several (times -1, -2, ...)"
            )
        if bg_latents is not None:
            if self.bg_in is None:
                raise ValueError("bg_latents given but this model has no video-condition modules (bg_in, bg_proj): use the "
                                 "hunyuancustom_editing_720P checkpoint with transformer.video_condition=True")
            if bg_latents.shape != (b, t, h, w, 2 * ch):
                raise ValueError(f"bg_latents must be (B, T, H, W, 2C) = {(b, t, h, w, 2 * ch)} ([masked video; mask] latents), "
                                 f"got {bg_latents.shape}")
        if audio_prompts is not None:
            if self.audio_proj is None:
                raise ValueError("audio_prompts given but this model has no audio modules (audio_proj, audio_models): use the "
                                 "hunyuancustom_audio_720P checkpoint with transformer.audio_condition=True")
            frames = 4 * (t // c.patch_size[0] - 1) + 1
            expected = (b, frames, c.audio_window, c.audio_states, c.audio_channels)
            if audio_prompts.shape != expected:
                raise ValueError(f"audio_prompts must be (B, 4(T-1)+1 video frames, window, states, channels) = {expected}, "
                                 f"got {audio_prompts.shape}")
