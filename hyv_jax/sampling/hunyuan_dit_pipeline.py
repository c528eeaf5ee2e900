"""Hunyuan-DiT text-to-image: prompts -> bilingual CLIP + mT5 states -> a DDPM-family solver
over the transformer's v-prediction with classifier-free guidance -> SDXL VAE decode -> uint8
images (hydit/inference.py:predict + hydit/diffusion/pipeline.py, as sample_t2i.py runs them).

The denoising step is one pure function `step(state, latents, t, coefficients, index, keys,
conditions, carry) -> (latents, carry)`, jitted once over the split transformer state: the
timestep, the solver's coefficients and the step index are arrays, so neither another step
nor another step count retraces. The carry is the previous step's x0 prediction (DPM-Solver++
reads it).

On a ParallelPlan's mesh the transformer's weights are restored straight into their shards
(FSDP over the model width) and the batch (images, CFG halves) splits over `data`/`fsdp`; the
initial noise is drawn on the host and the per-step noise from per-image keys, so an image
does not depend on the mesh. Every process of a multi-host job runs the same calls: the text
encoders and the VAE run on each process's own devices, the denoising loop on the global mesh.
Hunyuan-DiT has no context (sequence) parallelism.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from hyv_jax.loading.hunyuan_dit import load_hunyuan_dit, load_hunyuan_dit_text_encoder, load_sdxl_vae
from hyv_jax.loading.paths import DiTPaths
from hyv_jax.models.hunyuan_dit.text_encoder import DiTPromptEmbeddings, HunyuanDiTTextEncoder
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE, SDXLVAEConfig
from hyv_jax.parallel.plan import ParallelPlan, local_mesh
from hyv_jax.parallel.processes import to_host
from hyv_jax.sampling.ddpm_solvers import solver_plan, solver_update, step_noise
from hyv_jax.sampling.guidance import combine_cfg
from hyv_jax.sampling.guidance_rescale import rescale_guidance
from hyv_jax.sampling.hunyuan_dit_options import ImageSamplingOptions
from hyv_jax.sampling.noise import initial_noise


def check_text_sizes(transformer: HunyuanDiTConfig, text_encoder) -> None:
    """The encoders' widths and token counts must be the transformer's text inputs."""
    pairs = (("text_encoder.bert.hidden_size", text_encoder.bert.hidden_size, "text_states_dim", transformer.text_states_dim),
             ("text_encoder.bert_max_length", text_encoder.bert_max_length, "text_len", transformer.text_len),
             ("text_encoder.mt5.d_model", text_encoder.mt5.d_model, "text_states_dim_t5", transformer.text_states_dim_t5),
             ("text_encoder.mt5_max_length", text_encoder.mt5_max_length, "text_len_t5", transformer.text_len_t5))
    differ = [f"{a} {x} != transformer.{b} {y}" for a, x, b, y in pairs if x != y]
    if differ:
        raise ValueError("the text encoders do not feed this transformer: " + "; ".join(differ))


class HunyuanDiTPipeline:
    """`text_encoder` follows HunyuanDiTTextEncoder (encode, release). `plan`: run the denoising
    loop on its mesh (the transformer must be placed on that mesh: `from_config` does it)."""

    def __init__(self, transformer: HunyuanDiT, vae: SDXLVAE, text_encoder: HunyuanDiTTextEncoder | None = None, *,
                 plan: ParallelPlan | None = None, release_text_encoder: bool = True):
        self.config = transformer.config
        self.vae_config = vae.config
        self.text_encoder = text_encoder
        self.plan = plan
        self.release_text_encoder = release_text_encoder
        self.graphdef, self.state = nnx.split(transformer)
        self.traces = 0  # how often the step was traced (once per input shapes and solver)
        self._step = jax.jit(self.step, static_argnames="solver")
        vae_graph, self._vae_state = nnx.split(vae)
        self._decode = jax.jit(lambda state, z: _to_uint8(nnx.merge(vae_graph, state).decode(z)))

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, paths: DiTPaths = DiTPaths(), *, seed: int = 0,
                    plan: ParallelPlan | None = None) -> "HunyuanDiTPipeline":
        """Models of a Hunyuan-DiT config (configs/hunyuan_dit.py), weights from `paths`; absent
        folders get random weights from `seed` where the config allows it. The transformer is
        sharded over the plan's mesh, the VAE sits on this process's first device, the text
        encoders over its devices."""
        dit_config = HunyuanDiTConfig.from_mapping(config.transformer)
        check_text_sizes(dit_config, config.text_encoder)
        paths.check(config.get("allow_random_weights", False))
        if plan is not None and plan.context_strategy != "none":
            raise ValueError("Hunyuan-DiT has no context parallelism: split the batch and the weights "
                             "(--config.parallel.mesh.data / fsdp), without --ulysses-degree / --ring-degree")
        transformer = load_hunyuan_dit(dit_config, paths.transformer, seed=seed, mesh=plan and plan.mesh)
        vae = load_sdxl_vae(SDXLVAEConfig.from_mapping(config.vae), paths.vae, seed=seed + 1)
        text_encoder = load_hunyuan_dit_text_encoder(config.text_encoder, bert_dir=paths.bert, mt5_dir=paths.mt5, seed=seed + 2,
                                                     mesh=local_mesh() if plan else None)
        return cls(transformer, vae, text_encoder, plan=plan)

    def __call__(self, prompts: Sequence[str], options: ImageSamplingOptions, *, progress: bool = True) -> np.ndarray:
        """uint8 images (len(prompts) * num_images, H, W, 3); image i of prompt p uses seed
        options.seed + p * num_images + i."""
        return self.decode(self.sample(self.encode(prompts, options), options, progress=progress))

    def encode(self, prompts: Sequence[str], options: ImageSamplingOptions) -> DiTPromptEmbeddings:
        """Text for the sampling batch: num_images rows per prompt, preceded by as many negative
        prompt rows ([negative, positive]) when classifier-free guidance is on."""
        if self.text_encoder is None:
            raise ValueError("this pipeline was built without its text encoders; pass prompt embeddings to sample()")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        positive = self.text_encoder.encode(prompts).map(lambda a: np.repeat(a, options.num_images, axis=0))
        if options.cfg_scale <= 1:
            if self.release_text_encoder:
                self.text_encoder.release()
            return positive
        negative = self.text_encoder.encode([options.negative_prompt]).map(lambda a: np.repeat(a, len(positive.mask), axis=0))
        if self.release_text_encoder:
            self.text_encoder.release()
        return DiTPromptEmbeddings.concatenate([negative, positive])

    def image_conditions(self, batch: int, height: int, width: int, options: ImageSamplingOptions):
        """(image_meta_size, style) for the model batch of size_style_cond models (<= v1.1),
        else (None, None): upstream's size_cond + [target width, height, 0, 0] and style 0
        (hydit/inference.py:predict)."""
        if not self.config.size_style_cond:
            return None, None
        if not options.size_cond:
            raise ValueError("this transformer (<= v1.1) needs size_cond, e.g. (1024, 1024) as upstream's --size-cond 1024 1024")
        meta = np.tile(np.array([[*options.size_cond, width, height, 0, 0]], np.float32), (batch, 1))
        return meta, np.zeros((batch,), np.int32)

    def sample(self, text: DiTPromptEmbeddings, options: ImageSamplingOptions, *, noise: np.ndarray | None = None,
               progress: bool = True) -> np.ndarray:
        """Host latents (B, h, w, 4) from text for B images ([negative; positive] 2B rows with
        CFG). noise: the initial latents (B, h, w, 4); default drawn on the host from the seeds."""
        height, width = options.size
        if options.cfg_scale > 1 and len(text.mask) % 2:
            raise ValueError(f"with classifier-free guidance the text holds [negative; positive] rows, got {len(text.mask)} rows")
        batch = len(text.mask) // 2 if options.cfg_scale > 1 else len(text.mask)
        shape = (height // self.vae_config.scale, width // self.vae_config.scale, self.config.in_channels)
        seeds = np.arange(batch, dtype=np.int32) + options.seed
        noise = np.asarray(initial_noise(seeds.tolist(), shape, "float32") if noise is None else noise, np.float32)
        if noise.shape != (batch, *shape):
            raise ValueError(f"initial noise must be {(batch, *shape)}, got {noise.shape}")
        plan = solver_plan(options.solver, options.steps, options.noise_schedule())
        meta, style = self.image_conditions(len(text.mask), height, width, options)
        conditions = self.place(dict(states=text.states, mask=text.mask, states_t5=text.states_t5, mask_t5=text.mask_t5,
                                     meta=meta, style=style, cfg_scale=np.float32(options.cfg_scale),
                                     rescale=np.float32(options.guidance_rescale)))
        latents, carry, seeds = self.place((noise, np.zeros_like(noise), seeds))
        for i in tqdm(range(plan.steps), desc="denoising", unit="step", disable=not progress or jax.process_index() != 0):
            latents, carry = self._step(self.state, latents, np.float32(plan.timesteps[i]), plan.coefficients[i], np.int32(i), seeds,
                                        conditions, carry, solver=plan.solver)
            latents.block_until_ready()  # the bar shows the compute rate, not the dispatch rate
        return to_host(latents)

    def step(self, state, latents, t, coefficients, index, seeds, conditions, carry, *, solver: str):
        """latents at step `index` -> the next latents, and the carry (the x0 prediction)."""
        self.traces += 1
        model = nnx.merge(self.graphdef, state)
        guided = conditions["states"].shape[0] == 2 * latents.shape[0]
        x = jnp.concatenate([latents, latents]) if guided else latents
        out = model(x, jnp.broadcast_to(t, (x.shape[0],)), conditions["states"], conditions["mask"], conditions["states_t5"],
                    conditions["mask_t5"], conditions["meta"], conditions["style"], parallel=self.plan)
        v = out[..., :self.config.in_channels].astype(jnp.float32)  # the learned variance is not used
        if guided:
            v = rescale_guidance(combine_cfg(v, conditions["cfg_scale"]), jnp.split(v, 2)[1], conditions["rescale"])
        noise = step_noise(jax.vmap(jax.random.key)(seeds), index, latents.shape[1:]) if solver == "ddpm" else None
        return solver_update(solver, latents, v, coefficients, noise, carry)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """uint8 images (B, H, W, 3) of latents (the VAE's scaling undone here), decoded on this
        process's first device."""
        z = jax.device_put(np.asarray(latents, np.float32) / np.float32(self.vae_config.scaling_factor), jax.local_devices()[0])
        return np.asarray(jax.device_get(self._decode(self._vae_state, z)))

    def place(self, tree):
        """Host arrays -> device arrays: batch-split over the plan's mesh, or on one device."""
        return self.plan.place_batch(tree) if self.plan else jax.device_put(tree, jax.local_devices()[0])


def _to_uint8(images: jax.Array) -> jax.Array:
    """[-1, 1] -> uint8 as diffusers' VaeImageProcessor: clip(x / 2 + 0.5) * 255, rounded."""
    return jnp.round(jnp.clip(images.astype(jnp.float32) / 2 + 0.5, 0, 1) * 255).astype(jnp.uint8)
