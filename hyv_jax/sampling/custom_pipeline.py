"""HunyuanCustom sampling: text + reference image(s) -> video, optionally driven by speech
(audio checkpoint) or editing a masked region of an input video (editing checkpoint).

The base pipeline's pieces are reused (flow schedule, Euler steps compiled once, true CFG over
[negative, positive], seeded noise, VAE decode); what differs is the conditioning:
- text: CustomTextEncoder (LLaVA with the reference image; the negative prompt with a white one);
- ref_latents: the reference padded to the video size, VAE posterior sample x scaling factor,
  the same for both CFG branches;
- audio_prompts: Whisper windows per video frame; zeros for the negative branch;
- bg_latents: [VAE(masked video); VAE(mask video)] x scaling factor, the same for both branches.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from PIL import Image

from hyv_jax.convert.custom_checkpoint import abstract_custom, export_torch_custom, read_torch_custom, restore_custom
from hyv_jax.convert.vae_checkpoint import restore_vae
from hyv_jax.convert.whisper_checkpoint import load_whisper_encoder
from hyv_jax.models.custom.audio_prompts import FPS, SAMPLE_RATE, encode_audio
from hyv_jax.models.custom.custom_text_encoder import CustomTextEncoder
from hyv_jax.models.custom.mask_video import masked_video
from hyv_jax.models.custom.reference_latents import reference_latents
from hyv_jax.models.custom.transformer import CustomTransformerConfig, HunyuanCustomTransformer
from hyv_jax.models.custom.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig, sample_posterior
from hyv_jax.sampling.denoise import DenoiseStep
from hyv_jax.sampling.frames import to_uint8
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.pipeline import ModelPaths, TextToVideoPipeline, Videos, _random_model, batch_for_videos, random_vae

__all__ = ["FPS", "SAMPLE_RATE", "CustomInputs", "CustomPaths", "CustomVideoPipeline", "random_custom_transformer", "resize_frames"]


@dataclasses.dataclass(frozen=True)
class CustomPaths(ModelPaths):
    """ModelPaths plus the two Hugging Face folders read directly: HunyuanCustom's LLaVA (vision
    tower + projector) and whisper-tiny (audio mode)."""

    llava: str | Path | None = None
    whisper: str | Path | None = None

    def check(self, allow_random_weights: bool, *, audio: bool = False) -> None:
        ModelPaths(**{f: getattr(self, f) for f in ModelPaths.__dataclass_fields__}).check(allow_random_weights)
        for name in ("llava", "whisper"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).exists():
                raise FileNotFoundError(f"{name} folder {folder} does not exist; pass the Hugging Face folder of the model")
        needed = ["llava"] + (["whisper"] if audio else [])
        missing = [n for n in needed if getattr(self, n) is None]
        if missing and not allow_random_weights:
            raise ValueError(f"this model config needs the Hugging Face folders of {', '.join(missing)} "
                             f"(--{missing[0]}-dir); random weights only run with the tiny config")


@dataclasses.dataclass(frozen=True)
class CustomInputs:
    """What the video is conditioned on besides the prompt, already decoded (host arrays)."""

    reference_images: Sequence[np.ndarray]  # (H, W, 3) uint8 each; one for the released weights
    audio: np.ndarray | None = None  # mono float32 samples at 16 kHz (audio checkpoint)
    audio_strength: float = 1.0
    video: np.ndarray | None = None  # (T, H, W, 3) uint8 at the output size (editing checkpoint)
    mask: np.ndarray | None = None  # (T, H, W) bool, True = region to generate
    subject_name: str = "object"  # in the prompt suffix "The {name} looks like<image>"

    def check(self, config: CustomTransformerConfig, options: SamplingOptions) -> None:
        """Fails, saying what to do, before any model work."""
        if not self.reference_images:
            raise ValueError("HunyuanCustom needs a reference image (--ref-image)")
        if self.audio is not None and not config.audio_condition:
            raise ValueError("audio given but the model has no audio modules: use the hunyuancustom_audio_720P checkpoint "
                             "(transformer.audio_condition=True)")
        if (self.video is None) != (self.mask is None):
            raise ValueError("editing needs both an input video and a mask video (--input-video and --mask-video)")
        if self.video is not None:
            if not config.video_condition:
                raise ValueError("an input video given but the model has no video-condition modules: use the "
                                 "hunyuancustom_editing_720P checkpoint (transformer.video_condition=True)")
            expected = (options.frames, options.height, options.width)
            if self.video.shape[:3] != expected or self.mask.shape != expected:
                raise ValueError(f"input video {self.video.shape[:3]} and mask {self.mask.shape} must both be (frames, height, width) "
                                 f"= {expected}; resize them to the output size and give both the same 4k+1 frames")


def random_custom_transformer(config: CustomTransformerConfig, seed: int = 0) -> HunyuanCustomTransformer:
    return _random_model(abstract_custom(config), lambda flat: export_torch_custom(flat, config),
                         lambda source, dtype: read_torch_custom(source, config, dtype), config.param_dtype, seed)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3), bilinear."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


# upstream's step cache (`use_deepcache`, only at 30 steps): these steps reuse the joint tokens
# entering the last single block from the latest full step
STEP_CACHE_STEPS = 30
CACHED_STEPS = frozenset({11, 12, 14, 15, 17, 18, 20, 21})


class CustomDenoiseStep(DenoiseStep):
    """Conditions: ref (B, R, h, w, C), bg (B, T, h, w, 2C) or None, audio (B, F, ...) or None,
    strength (scalar). For true CFG the reference and background repeat and audio is zero on
    the negative half, as upstream. With `cached_steps` the calls (0, 1, ...) of those indices
    run from the step cache of the latest full call (two compiled variants). One step object
    serves every sampling run (`begin` sets the run's conditions): its compilations are kept."""

    def __init__(self, transformer: HunyuanCustomTransformer):
        super().__init__(transformer)
        self._jitted = jax.jit(self._step, static_argnames=("want_cache",))
        self.begin(None)

    def begin(self, conditions: dict | None, cached_steps=frozenset()) -> None:
        """Starts a sampling run: its conditions and cached step indices; call counts and the
        step cache start afresh."""
        self.conditions = jax.device_put(conditions)
        self.cached_steps = frozenset(cached_steps)
        self.calls = self.cached_calls = 0
        self._cache = None

    def predict(self, model, x, t, text_states, text_mask, pooled, guidance, conditions, true_cfg, cache=None,
                want_cache=False):
        ref, bg, audio, strength = conditions["ref"], conditions["bg"], conditions["audio"], conditions["strength"]
        if true_cfg:
            ref = jnp.concatenate([ref, ref])
            bg = None if bg is None else jnp.concatenate([bg, bg])
            audio = None if audio is None else jnp.concatenate([jnp.zeros_like(audio), audio])
        out = model(x, t, ref, text_states, text_mask, pooled, bg_latents=bg, audio_prompts=audio, audio_strength=strength,
                    step_cache=cache, return_step_cache=want_cache)
        return out if want_cache else (out, None)

    def _step(self, state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale, conditions,
              cache, want_cache):
        return super()._step(state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale,
                             conditions, cache=cache, want_cache=want_cache)

    def __call__(self, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance, cfg_scale) -> jax.Array:
        use = self.calls in self.cached_steps and self._cache is not None
        want = bool(self.cached_steps) and not use
        latents, cache = self._jitted(self.state, latents, t, sigma, sigma_next, text_states, text_mask, pooled, guidance,
                                      cfg_scale, self.conditions, self._cache if use else None, want_cache=want)
        if want:
            self._cache = cache
        self.calls += 1
        self.cached_calls += use
        return latents


class CustomVideoPipeline(TextToVideoPipeline):
    """`text_encoder` is a CustomTextEncoder; `whisper` only for audio-driven sampling."""

    step_type = CustomDenoiseStep

    def __init__(self, text_encoder: CustomTextEncoder, transformer: HunyuanCustomTransformer, vae: CausalVideoVAE,
                 whisper: WhisperEncoder | None = None, *, release_text_encoder: bool = True):
        super().__init__(text_encoder, transformer, vae, release_text_encoder=release_text_encoder)
        self.whisper = whisper

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, paths: CustomPaths = CustomPaths(), *, seed: int = 0,
                    audio: bool = False) -> "CustomVideoPipeline":
        """Models of a HunyuanCustom config (transformer, vae, text_encoder, vision, whisper);
        absent folders get random weights from `seed` where the config allows it."""
        paths.check(config.get("allow_random_weights", False), audio=audio)
        transformer_config = CustomTransformerConfig.from_mapping(config.transformer)
        vae_config = VAEConfig.from_mapping(config.vae)
        transformer = (restore_custom(paths.transformer, transformer_config) if paths.transformer
                       else random_custom_transformer(transformer_config, seed))
        vae = restore_vae(paths.vae, vae_config) if paths.vae else random_vae(vae_config, seed + 1)
        text_encoder = CustomTextEncoder.load(config, llm_dir=paths.llm, clip_dir=paths.clip, llava_dir=paths.llava, seed=seed + 2)
        whisper = None
        if audio:
            whisper_config = WhisperEncoderConfig.from_mapping(config.whisper)
            whisper = (load_whisper_encoder(paths.whisper, whisper_config) if paths.whisper
                       else _random_whisper(whisper_config, seed + 4))
        return cls(text_encoder, transformer, vae, whisper)

    def encode_custom_prompt(self, prompt: str, inputs: CustomInputs, options: SamplingOptions):
        """[negative (white image), positive] embeddings for true CFG, else the positive one;
        each repeated for the options' videos. The first reference image conditions LLaVA."""
        positive = self.text_encoder.encode([prompt], [inputs.reference_images[0]], name=inputs.subject_name)
        parts = [self.text_encoder.encode_unconditional([options.negative_prompt]), positive] if options.true_cfg else [positive]
        if self.release_text_encoder:
            self.text_encoder.release()
        return batch_for_videos(parts, options)

    def _encode_video(self, video: np.ndarray, rng: jax.Array) -> jax.Array:
        """(T, H, W, 3) uint8 -> (1, T', h, w, C) posterior sample x scaling factor."""
        pixels = jnp.asarray(video[None], jnp.float32) / 127.5 - 1.0
        mean, logvar = self.vae.encode(pixels.astype(self.vae.config.dtype))
        return sample_posterior(mean, logvar, rng).astype(jnp.float32) * self.vae.config.scaling_factor

    def conditions(self, inputs: CustomInputs, options: SamplingOptions, rng: jax.Array) -> dict:
        """The per-video conditions of the denoising step, batched for the options' videos."""
        ref_key, video_key, mask_key = jax.random.split(rng, 3)
        n = options.num_videos
        ref = reference_latents(self.vae, list(inputs.reference_images), options.width, options.height, ref_key)
        bg = audio = None
        if inputs.video is not None:
            mask_rgb = np.repeat(inputs.mask[..., None].astype(np.uint8) * 255, 3, axis=-1)
            bg = jnp.concatenate([self._encode_video(masked_video(inputs.video, inputs.mask), video_key),
                                  self._encode_video(mask_rgb, mask_key)], axis=-1)
            bg = jnp.repeat(bg, n, axis=0)
        if inputs.audio is not None:
            audio = jnp.repeat(jnp.asarray(encode_audio(self.whisper, inputs.audio, options.frames)), n, axis=0)
        return dict(ref=jnp.repeat(ref.astype(jnp.float32), n, axis=0), bg=bg, audio=audio,
                    strength=jnp.float32(inputs.audio_strength))

    def __call__(self, prompt: str, inputs: CustomInputs, options: SamplingOptions, *, step_cache: bool = True,
                 progress: bool = True) -> Videos:
        """step_cache: upstream's step cache, which applies at 30 steps only (on by default there)."""
        inputs.check(self.transformer.config, options)
        if options.first_block_cache:
            raise ValueError("HunyuanCustom has its own step cache (step_cache / --step-cache); the first block cache is for "
                             "text-to-video: set first_block_cache to 0")
        if inputs.audio is not None and self.whisper is None:
            raise ValueError("audio given but the pipeline has no Whisper encoder: build it with audio=True")
        text = self.encode_custom_prompt(prompt, inputs, options)
        noise, seeds = self.noise(options)
        cached = CACHED_STEPS if step_cache and options.steps == STEP_CACHE_STEPS else frozenset()
        self.step.begin(self.conditions(inputs, options, jax.random.key(options.seed)), cached)
        latents = self.sample_latents(text, noise, options, progress=progress)
        return Videos(to_uint8(self.decode(latents, options)), np.asarray(latents), seeds)


def _random_whisper(config: WhisperEncoderConfig, seed: int) -> WhisperEncoder:
    return WhisperEncoder(config, rngs=nnx.Rngs(seed))
