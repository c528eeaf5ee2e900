"""Text -> video: the text encoder, the transformer and the VAE composed from a model config
and optional converted checkpoint folders, on one device or on a ParallelPlan's mesh.

prompt -> TextEncoder (LLM states + mask, CLIP pooled; released before the transformer runs)
-> per-video seeded noise -> the compiled denoising step over the shifted flow schedule
(embedded guidance, optional true CFG over [negative, positive], the policy's cache) -> VAE
decode -> uint8 frames.

On a mesh the transformer's weights are restored straight into their shards, the batch (videos,
CFG branches) splits over `data`/`fsdp` and the tokens over `context`; noise is drawn on the
host, so the video does not depend on the mesh. Every process of a multi-host job runs the same
calls: text encoders and the VAE run on each process's own devices (same results everywhere),
the denoising loop on the global mesh.
"""

import dataclasses

import jax
import ml_collections
import numpy as np
from flax import nnx

from hyv_jax.loading.memory_modes import MemoryMode
from hyv_jax.loading.models import TransformerLoader, load_text_encoder, load_vae
from hyv_jax.loading.paths import ModelPaths
from hyv_jax.models.text_mask import check_text_mask
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.parallel.plan import ParallelPlan, local_mesh
from hyv_jax.parallel.processes import is_main, to_host
from hyv_jax.sampling.denoise import CompiledStep, FullModel, StepConditions, VelocityPolicy, denoise
from hyv_jax.sampling.first_block_cache import FirstBlockCache
from hyv_jax.sampling.frames import decode_latents, to_uint8
from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT, cfg_batch, embedded_guidance
from hyv_jax.sampling.noise import initial_noise, latent_shape, video_seeds
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.residency import check_residency
from hyv_jax.sampling.schedule import FlowSchedule


@dataclasses.dataclass(frozen=True)
class Videos:
    frames: np.ndarray  # (B, T, H, W, 3) uint8
    latents: np.ndarray  # (B, T', H/8, W/8, C) float32, before the VAE scaling is undone
    seeds: list[int]
    full_steps: int  # steps that ran every transformer block (fewer with a cache)


def batch_for_videos(parts: list, options: SamplingOptions):
    """[negative, positive] embeddings (true CFG) or [positive], each repeated for the options'
    videos, as the one batch the denoising step takes."""
    parts = [p.map(lambda a: np.repeat(a, options.num_videos, axis=0)) for p in parts]
    return cfg_batch(*parts) if options.true_cfg else parts[0]


class TextToVideoPipeline:
    """`text_encoder` follows hyv_jax.models.text.text_encoder.TextEncoder (encode, release).
    `transformer`: the DiT, or a loader of it (hyv_jax.loading.models.TransformerLoader) that
    places it when the first denoising loop needs it, i.e. after the text encoders ran and were
    released. `release_transformer` (a loader only) frees the DiT after each denoising loop,
    before the VAE decodes ("sequential" residency). `plan`: run the denoising loop on its mesh
    (the transformer must be placed on that mesh: `from_config` does it)."""

    def __init__(self, text_encoder, transformer: HunyuanVideoTransformer | TransformerLoader, vae: CausalVideoVAE, *,
                 plan: ParallelPlan | None = None, release_text_encoder: bool = True, release_transformer: bool = False):
        self.text_encoder = text_encoder
        self.vae = vae
        self.plan = plan
        self.release_text_encoder = release_text_encoder
        if isinstance(transformer, TransformerLoader):
            self._load_transformer, self.transformer = transformer, transformer.abstract()  # config and shapes until placed
            self.graphdef, self.state = nnx.split(self.transformer)[0], None
        else:
            if release_transformer:
                raise ValueError("release_transformer needs a TransformerLoader (a placed model cannot be loaded again)")
            self._load_transformer, self.transformer = None, transformer
            self.graphdef, self.state = nnx.split(transformer)
        self.release_transformer = release_transformer
        self.steps: dict = {}  # policy -> CompiledStep: compiled programs serve every later call

    @classmethod
    def load_models(cls, config: ml_collections.ConfigDict, paths: ModelPaths, seed: int, plan: ParallelPlan | None,
                    memory: MemoryMode = MemoryMode(), loras=()):
        """(transformer loader, vae, text encoder) of `config`: the transformer to be sharded over
        the plan's mesh and held per `memory` (with `loras` merged, see load_transformer), the VAE
        on this process's first device, the text encoders over its devices."""
        transformer = TransformerLoader(TransformerConfig.from_mapping(config.transformer), paths.transformer, seed,
                                        plan and plan.mesh, memory, loras=tuple(loras))
        vae = load_vae(VAEConfig.from_mapping(config.vae), paths.vae, seed=seed + 1)
        text_encoder = load_text_encoder(config.text_encoder, llm_dir=paths.llm, clip_dir=paths.clip, seed=seed + 2,
                                         mesh=local_mesh() if plan else None)
        return transformer, vae, text_encoder

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, paths: ModelPaths = ModelPaths(), *, seed: int = 0,
                    plan: ParallelPlan | None = None, memory: MemoryMode = MemoryMode(),
                    residency: str = "resident", loras=()) -> "TextToVideoPipeline":
        """Models of `config` (its transformer, vae, text_encoder sections), weights from `paths`;
        absent folders get random weights from `seed` where the config allows it. `memory`: how
        the DiT's weights are held (fp8, blocks offloaded to host memory); `residency`:
        "resident" keeps the DiT once placed, "sequential" frees it after each denoising loop.
        `loras`: [(LoraUpdates, scale)] from hyv_jax.lora.merge.read_lora_files, merged into the
        transformer's weights whenever it is placed."""
        paths.check(config.get("allow_random_weights", False))
        transformer, vae, text_encoder = cls.load_models(config, paths, seed, plan, memory, loras)
        return cls(text_encoder, transformer, vae, plan=plan, release_transformer=check_residency(residency) == "sequential")

    def transformer_state(self) -> nnx.State:
        """The DiT's state, placing it first when it is not (a loader's first use, or after a
        release)."""
        if self.state is None:
            self.graphdef, self.state = nnx.split(self._load_transformer())
        return self.state

    def release(self) -> None:
        """Frees the DiT's buffers (device and host); the next denoising loop places it again."""
        if self._load_transformer is None:
            raise ValueError("this pipeline was given a placed transformer, which it cannot load again")
        if self.state is not None:
            for array in jax.tree.leaves(self.state):
                array.delete()
        self.state = None

    def encode_prompt(self, prompt: str, options: SamplingOptions):
        """Embeddings for the options' batch: B copies of the prompt, or [negative x B, prompt x B]
        for true CFG. Releases the text encoder afterwards unless told not to."""
        mode = "image" if options.frames == 1 else "video"
        # stripped, and an empty negative prompt replaced by the default, as hyvideo/inference.py:595-606
        negative = (options.negative_prompt if options.negative_prompt != "" else DEFAULT_NEGATIVE_PROMPT).strip()
        prompts = [negative, prompt.strip()] if options.true_cfg else [prompt.strip()]
        both = self.text_encoder.encode(prompts, mode=mode)
        if self.release_text_encoder:
            self.text_encoder.release()
        return batch_for_videos([both.map(lambda a, i=i: a[i:i + 1]) for i in range(len(prompts))], options)

    def noise(self, options: SamplingOptions) -> tuple[np.ndarray, list[int]]:
        """(B, T', h, w, C) float32 host noise, video i from seed + i (the same on every mesh)."""
        c, v = self.transformer.config, self.vae.config
        shape = latent_shape(options.frames, options.height, options.width, c.in_channels, v.temporal_ratio, v.spatial_ratio)
        seeds = video_seeds(options.seed, options.num_videos)
        return np.asarray(initial_noise(seeds, shape, options.noise_dtype)), seeds

    def place(self, tree):
        """Host arrays -> device arrays: batch-split over the plan's mesh, or on one device."""
        return self.plan.place_batch(tree) if self.plan else jax.device_put(tree, jax.local_devices()[0])

    def step_conditions(self, text, options: SamplingOptions, model_inputs: dict | None = None) -> StepConditions:
        """The denoising step's conditions for `text` (the model batch), placed."""
        check_text_mask(text.mask, right_padded=self.transformer.RIGHT_PADDED_TEXT)  # on the host: the jitted step sees its shape only
        batch = text.states.shape[0]
        c = self.transformer.config
        guidance = embedded_guidance(options.embedded_guidance if c.guidance_embed else None, batch, c.dtype)
        return self.place(StepConditions(text.states, text.mask, text.pooled, guidance, np.float32(options.cfg_scale),
                                         model_inputs or {}))

    def policy(self, options: SamplingOptions, model_shape: tuple[int, ...], conditions: StepConditions) -> tuple[VelocityPolicy, object]:
        """(velocity policy, its first carry) for the options."""
        if options.first_block_cache:
            return FirstBlockCache(), FirstBlockCache.init_carry(self.transformer, model_shape, conditions, options.first_block_cache)
        return FullModel(), ()

    def compiled_step(self, policy: VelocityPolicy) -> CompiledStep:
        if policy not in self.steps:
            self.steps[policy] = CompiledStep(self.graphdef, policy, self.plan)
        return self.steps[policy]

    def sample_latents(self, text, noise: np.ndarray, options: SamplingOptions, *, model_inputs: dict | None = None,
                       progress: bool = True, ip_scales: np.ndarray | None = None, **policy_options) -> tuple[np.ndarray, int]:
        """The denoising loop from text embeddings (B or [negative, positive] 2B; 3B with the
        per-step `ip_scales` of image CFG), host noise and the variant's model inputs (in the model
        batch) -> (host latents, steps that ran every block). policy_options go to `policy`."""
        schedule = FlowSchedule.create(options.steps, options.flow_shift, options.sigma_spacing)
        conditions = self.step_conditions(text, options, model_inputs)
        policy, carry = self.policy(options, (text.states.shape[0], *noise.shape[1:]), conditions, **policy_options)
        carry = self.plan.replicate(carry) if self.plan else jax.device_put(carry, jax.local_devices()[0])
        state = self.transformer_state()  # placed first: the compiled step takes its graph
        latents, carry = denoise(self.compiled_step(policy), state, self.place(np.asarray(noise, np.float32)), schedule, conditions,
                                 carry, progress=progress and is_main(), ip_scales=ip_scales)
        latents, full_steps = to_host(latents), policy.full_steps(carry, options.steps)
        if self.release_transformer:
            self.release()
        return latents, full_steps

    def decode(self, latents: np.ndarray, options: SamplingOptions) -> jax.Array:
        """Latents -> float32 video in [0, 1] (on this process's first device)."""
        return decode_latents(self.vae, jax.device_put(np.asarray(latents), jax.local_devices()[0]), tiling=options.vae_tiling)

    def __call__(self, prompt: str, options: SamplingOptions, *, progress: bool = True) -> Videos:
        text = self.encode_prompt(prompt, options)
        noise, seeds = self.noise(options)
        latents, full = self.sample_latents(text, noise, options, progress=progress)
        return Videos(to_uint8(self.decode(latents, options)), latents, seeds, full)

