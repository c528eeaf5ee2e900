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

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import TransformerLoader, load_custom_text_encoder, load_vae, load_whisper
from hyv_jax.loading.paths import CustomPaths
from hyv_jax.models.custom.audio_prompts import FPS, SAMPLE_RATE, encode_audio
from hyv_jax.models.custom.custom_text_encoder import CustomTextEncoder
from hyv_jax.models.custom.mask_video import masked_video
from hyv_jax.models.custom.reference_latents import reference_latents
from hyv_jax.models.custom.transformer import CustomTransformerConfig, HunyuanCustomTransformer
from hyv_jax.models.custom.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig, sample_posterior
from hyv_jax.parallel.plan import ParallelPlan, local_mesh
from hyv_jax.sampling.denoise import StepConditions
from hyv_jax.sampling.frames import to_uint8
from hyv_jax.sampling.guidance import ip_cfg_scales
from hyv_jax.sampling.noise import seed_key
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.pipeline import TextToVideoPipeline, Videos, batch_for_videos
from hyv_jax.sampling.residency import check_residency
from hyv_jax.sampling.step_cache import StepCache, cached_steps

__all__ = ["FPS", "SAMPLE_RATE", "CustomInputs", "CustomPaths", "CustomVideoPipeline", "resize_frames"]


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


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3), OpenCV's bilinear (INTER_LINEAR) as upstream resizes."""
    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in frames])


class CustomVideoPipeline(TextToVideoPipeline):
    """`text_encoder` is a CustomTextEncoder; `whisper` only for audio-driven sampling."""

    def __init__(self, text_encoder: CustomTextEncoder, transformer: HunyuanCustomTransformer | TransformerLoader, vae: CausalVideoVAE,
                 whisper: WhisperEncoder | None = None, *, plan: ParallelPlan | None = None, release_text_encoder: bool = True,
                 release_transformer: bool = False):
        super().__init__(text_encoder, transformer, vae, plan=plan, release_text_encoder=release_text_encoder,
                         release_transformer=release_transformer)
        self.whisper = whisper

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, paths: CustomPaths = CustomPaths(), *, seed: int = 0,
                    plan: ParallelPlan | None = None, audio: bool = False, memory: MemoryMode = MemoryMode(),
                    residency: str = "resident", loras=()) -> "CustomVideoPipeline":
        """Models of a HunyuanCustom config (transformer, vae, text_encoder, vision, whisper);
        absent folders get random weights from `seed` where the config allows it. `memory`,
        `residency` and `loras` as for TextToVideoPipeline.from_config."""
        paths.check(config.get("allow_random_weights", False), audio=audio)
        transformer = TransformerLoader(CustomTransformerConfig.from_mapping(config.transformer), paths.transformer, seed,
                                        plan and plan.mesh, memory, loras=tuple(loras))
        vae = load_vae(VAEConfig.from_mapping(config.vae), paths.vae, seed=seed + 1)
        text_encoder = load_custom_text_encoder(config, llm_dir=paths.llm, clip_dir=paths.clip, llava_dir=paths.llava,
                                                seed=seed + 2, mesh=local_mesh() if plan else None)
        whisper = load_whisper(WhisperEncoderConfig.from_mapping(config.whisper), paths.whisper, seed=seed + 4) if audio else None
        return cls(text_encoder, transformer, vae, whisper, plan=plan, release_transformer=check_residency(residency) == "sequential")

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

    def model_inputs(self, inputs: CustomInputs, options: SamplingOptions, rng: jax.Array, *, image_cfg: bool = False) -> dict:
        """The transformer's further inputs in the model batch (host arrays): for each video the
        reference latents, the editing background and the audio windows; for true CFG the
        [negative, positive] halves repeat the reference and background, and the negative half
        hears silence (zeros), as upstream. image_cfg: the [negative, positive, positive] batch
        of --ip-cfg-scale, whose first two thirds see the reference latents of a white image
        (hymm_sp/diffusion/pipelines/pipeline_hunyuan_video_custom.py:889-893, sample_batch.py:68)."""
        ref_key, video_key, mask_key = jax.random.split(rng, 3)
        copies = options.num_videos * (2 if options.true_cfg else 1)
        ref = np.asarray(reference_latents(self.vae, list(inputs.reference_images), options.width, options.height, ref_key),
                         np.float32)
        if image_cfg:
            white = np.full((options.height, options.width, 3), 255, np.uint8)
            white_ref = np.asarray(reference_latents(self.vae, [white], options.width, options.height,
                                                     jax.random.fold_in(ref_key, 1)), np.float32)
            ref_latents = np.repeat(np.concatenate([white_ref, white_ref, ref]), options.num_videos, axis=0)
        else:
            ref_latents = np.repeat(ref, copies, axis=0)
        out = dict(ref_latents=ref_latents, audio_strength=np.float32(inputs.audio_strength))
        if inputs.video is not None:
            mask_rgb = np.repeat(inputs.mask[..., None].astype(np.uint8) * 255, 3, axis=-1)
            bg = jnp.concatenate([self._encode_video(masked_video(inputs.video, inputs.mask), video_key),
                                  self._encode_video(mask_rgb, mask_key)], axis=-1)
            out["bg_latents"] = np.repeat(np.asarray(bg), copies, axis=0)
        if inputs.audio is not None:
            audio = np.repeat(np.asarray(encode_audio(self.whisper, inputs.audio, options.frames)), options.num_videos, axis=0)
            out["audio_prompts"] = np.concatenate([np.zeros_like(audio), audio]) if options.true_cfg else audio
        return out

    def policy(self, options: SamplingOptions, model_shape, conditions: StepConditions, *, step_cache: bool = True):
        """Upstream's step cache at 30 steps (`step_cache`), else as for text-to-video."""
        reuse = cached_steps(options.steps, step_cache)
        if reuse and options.first_block_cache:
            raise ValueError("the step cache (on by default at 30 steps) and the first block cache do not combine: "
                             "turn one off (--no-step-cache, or first_block_cache 0)")
        if reuse:
            return StepCache(), StepCache.init_carry(self.transformer, model_shape, conditions, options.steps, reuse)
        return super().policy(options, model_shape, conditions)

    def __call__(self, prompt: str, inputs: CustomInputs, options: SamplingOptions, *, step_cache: bool = True,
                 ip_cfg_scale: float = 0.0, progress: bool = True) -> Videos:
        """step_cache: upstream's step cache, which applies at 30 steps only (on by default there).
        ip_cfg_scale > 0: upstream's image CFG, a third branch (the positive prompt with the
        reference) against the positive prompt with a white reference, its scale falling from
        ip_cfg_scale toward 1 over the steps (identity mode with true CFG, as upstream)."""
        inputs.check(self.transformer.config, options)
        if inputs.audio is not None and self.whisper is None:
            raise ValueError("audio given but the pipeline has no Whisper encoder: build it with audio=True")
        image_cfg = ip_cfg_scale > 0
        if image_cfg and (not options.true_cfg or inputs.audio is not None or inputs.video is not None):
            raise ValueError("--ip-cfg-scale needs true CFG (--cfg-scale > 1) and the identity mode (upstream batches neither "
                             "the audio nor the editing inputs for it)")
        text = self.encode_custom_prompt(prompt, inputs, options)
        if image_cfg:  # [negative, positive] -> [negative, positive, positive]
            text = text.map(lambda a: np.concatenate([a, a[len(a) // 2:]]))
        noise, seeds = self.noise(options)
        model_inputs = self.model_inputs(inputs, options, seed_key(options.seed), image_cfg=image_cfg)
        latents, full = self.sample_latents(text, noise, options, model_inputs=model_inputs, progress=progress,
                                            step_cache=step_cache,
                                            ip_scales=ip_cfg_scales(ip_cfg_scale, options.steps) if image_cfg else None)
        return Videos(to_uint8(self.decode(latents, options)), latents, seeds, full)
