"""Text -> video: the text encoder, the transformer and the VAE composed from a model config
and optional converted checkpoint folders.

prompt -> TextEncoder (LLM states + mask, CLIP pooled; released before the transformer runs)
-> per-video seeded noise -> compiled Euler steps over the shifted flow schedule (embedded
guidance, optional true CFG over [negative, positive]) -> VAE decode -> uint8 frames.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.model_state import param_shapes, params_tree
from hyv_jax.convert.orbax_io import INFO_FILE
from hyv_jax.convert.transformer_checkpoint import abstract_transformer, export_torch_transformer, read_torch_transformer, restore_transformer
from hyv_jax.convert.vae_checkpoint import abstract_vae, export_torch_vae, read_torch_vae, restore_vae
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.sampling.denoise import DenoiseStep, denoise
from hyv_jax.sampling.first_block_cache import FirstBlockCacheStep
from hyv_jax.sampling.frames import decode_latents, to_uint8
from hyv_jax.sampling.guidance import cfg_batch, embedded_guidance
from hyv_jax.sampling.noise import initial_noise, latent_shape, video_seeds
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.schedule import FlowSchedule

TOKENIZER_FILE = "tokenizer.json"


@dataclasses.dataclass(frozen=True)
class ModelPaths:
    """Folders written by convert_torch_weights.py; None -> random weights (tiny config only)."""

    transformer: str | Path | None = None
    vae: str | Path | None = None
    llm: str | Path | None = None
    clip: str | Path | None = None

    def missing(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is None]

    def check(self, allow_random_weights: bool) -> None:
        """Fails, saying what to do, on absent folders or tokenizers, or on missing checkpoints
        for a config that must not run with random weights. Reads no weights."""
        for name in ("transformer", "vae", "llm", "clip"):
            folder = getattr(self, name)
            if folder is None:
                continue
            folder = Path(folder)
            if not (folder / INFO_FILE).is_file():
                raise FileNotFoundError(
                    f"{name} checkpoint folder {folder} has no {INFO_FILE}: it is not a converted hyv_jax checkpoint; "
                    f"run `python convert_torch_weights.py to-jax --model {name} ... --out {folder}`"
                )
            if name in ("llm", "clip") and not (folder / TOKENIZER_FILE).is_file():
                raise FileNotFoundError(
                    f"{name} folder {folder} has no {TOKENIZER_FILE}; copy the tokenizer.json of the Hugging Face "
                    f"model folder into it (convert_torch_weights.py --model {name} does this)"
                )
        if self.missing() and not allow_random_weights:
            raise ValueError(
                f"this model config needs converted checkpoints, missing: {', '.join(self.missing())}; convert them with "
                "`python convert_torch_weights.py to-jax --model <transformer|vae|llm|clip> ...` and pass the folders "
                "(or use configs/tiny.py, which runs with random weights)"
            )


@dataclasses.dataclass(frozen=True)
class Videos:
    frames: np.ndarray  # (B, T, H, W, 3) uint8
    latents: np.ndarray  # (B, T', H/8, W/8, C) float32, before the VAE scaling is undone
    seeds: list[int]


def random_torch_values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """The fixtures' random init in PyTorch naming, walked in order: matrices and kernels
    N(0, 1/fan_in) with fan_in = prod(shape[1:]), biases N(0, 0.1^2), other vectors
    1 + N(0, 0.1^2). Nothing is zero, so every path of the model matters."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        draw = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) >= 2:
            values[name] = draw / np.float32(np.sqrt(np.prod(shape[1:])))
        else:
            values[name] = np.float32(0.1) * draw + np.float32(0.0 if name.endswith("bias") else 1.0)
    return values


def _random_model(abstract: nnx.Module, export, read, param_dtype: str, seed: int) -> nnx.Module:
    # Through the PyTorch layout, where fan-in is unambiguous, and in numpy: a jitted or eager
    # flax init of even the tiny models takes tens of seconds on a CPU.
    graphdef, state = nnx.split(abstract)
    zeros = {p: np.zeros(s, np.float32) for p, s in param_shapes(abstract).items()}
    torch_shapes = {name: v.shape for name, v in export(zeros).items()}
    flat = read(from_arrays(random_torch_values(torch_shapes, seed)), jnp.dtype(param_dtype))
    nnx.replace_by_pure_dict(state, params_tree({p: jnp.asarray(v) for p, v in flat.items()}))
    return nnx.merge(graphdef, state)


def random_transformer(config: TransformerConfig, seed: int = 0) -> HunyuanVideoTransformer:
    return _random_model(abstract_transformer(config), lambda flat: export_torch_transformer(flat, config),
                         lambda source, dtype: read_torch_transformer(source, config, dtype), config.param_dtype, seed)


def random_vae(config: VAEConfig, seed: int = 0) -> CausalVideoVAE:
    return _random_model(abstract_vae(config), lambda flat: export_torch_vae(flat, config),
                         lambda source, dtype: read_torch_vae(source, config, dtype), config.param_dtype, seed)


def batch_for_videos(parts: list, options: SamplingOptions):
    """[negative, positive] embeddings (true CFG) or [positive], each repeated for the options'
    videos, as the one batch the denoising step takes."""
    parts = [p.map(lambda a: np.repeat(a, options.num_videos, axis=0)) for p in parts]
    return cfg_batch(*parts) if options.true_cfg else parts[0]


class TextToVideoPipeline:
    """`text_encoder` follows hyv_jax.models.text.text_encoder.TextEncoder (encode, release)."""

    step_type = DenoiseStep  # built once: the compiled step serves every call

    def __init__(self, text_encoder, transformer: HunyuanVideoTransformer, vae: CausalVideoVAE, *, release_text_encoder: bool = True):
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.vae = vae
        self.release_text_encoder = release_text_encoder
        self.step = self.step_type(transformer)
        self.first_block_cache_step = None

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, paths: ModelPaths = ModelPaths(), *, seed: int = 0) -> "TextToVideoPipeline":
        """Models of `config` (its transformer, vae, text_encoder sections), weights from `paths`;
        absent folders get random weights from `seed` where the config allows it."""
        paths.check(config.get("allow_random_weights", False))
        from hyv_jax.models.text.text_encoder import TextEncoder  # the LLM stack loads only here

        transformer_config = TransformerConfig.from_mapping(config.transformer)
        vae_config = VAEConfig.from_mapping(config.vae)
        transformer = (restore_transformer(paths.transformer, transformer_config) if paths.transformer
                       else random_transformer(transformer_config, seed))
        vae = restore_vae(paths.vae, vae_config) if paths.vae else random_vae(vae_config, seed + 1)
        text_encoder = TextEncoder.load(config.text_encoder, llm_dir=paths.llm, clip_dir=paths.clip, seed=seed + 2)
        return cls(text_encoder, transformer, vae)

    def encode_prompt(self, prompt: str, options: SamplingOptions):
        """Embeddings for the options' batch: B copies of the prompt, or [negative x B, prompt x B]
        for true CFG. Releases the text encoder afterwards unless told not to."""
        mode = "image" if options.frames == 1 else "video"
        prompts = [options.negative_prompt, prompt] if options.true_cfg else [prompt]
        both = self.text_encoder.encode(prompts, mode=mode)
        if self.release_text_encoder:
            self.text_encoder.release()
        return batch_for_videos([both.map(lambda a, i=i: a[i:i + 1]) for i in range(len(prompts))], options)

    def noise(self, options: SamplingOptions) -> tuple[jax.Array, list[int]]:
        c, v = self.transformer.config, self.vae.config
        shape = latent_shape(options.frames, options.height, options.width, c.in_channels, v.temporal_ratio, v.spatial_ratio)
        seeds = video_seeds(options.seed, options.num_videos)
        return initial_noise(seeds, shape, options.noise_dtype), seeds

    def sample_latents(self, text, noise: jax.Array, options: SamplingOptions, *, progress: bool = True) -> jax.Array:
        """The denoising loop from given text embeddings (B or [negative, positive] 2B) and noise."""
        schedule = FlowSchedule.create(options.steps, options.flow_shift, options.sigma_spacing)
        batch = text.states.shape[0]
        guidance = embedded_guidance(options.embedded_guidance if self.transformer.config.guidance_embed else None, batch)
        step = self.step
        if options.first_block_cache:
            if self.first_block_cache_step is None:  # built on first use, then its compiled step serves every call
                self.first_block_cache_step = FirstBlockCacheStep(self.transformer)
            step = self.first_block_cache_step
            step.begin(options.first_block_cache)
        return denoise(step, noise, schedule, text, guidance, options.cfg_scale, progress=progress)

    @property
    def first_block_cache_steps(self) -> tuple[int, int] | None:
        """(steps that ran every block, steps) of the last run with the first block cache."""
        step = self.first_block_cache_step
        return None if step is None else (step.computed_steps(), len(step.computed))

    def decode(self, latents: jax.Array, options: SamplingOptions) -> jax.Array:
        """Latents -> float32 video in [0, 1]."""
        return decode_latents(self.vae, latents, tiling=options.vae_tiling)

    def __call__(self, prompt: str, options: SamplingOptions, *, progress: bool = True) -> Videos:
        text = self.encode_prompt(prompt, options)
        noise, seeds = self.noise(options)
        latents = self.sample_latents(text, noise, options, progress=progress)
        return Videos(to_uint8(self.decode(latents, options)), np.asarray(latents), seeds)
