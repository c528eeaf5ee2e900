"""Hunyuan-DiT text-to-image: prompts -> bilingual CLIP + mT5 states -> a DDPM-family solver
over the transformer's v-prediction with classifier-free guidance -> SDXL VAE decode -> uint8
images (hydit/inference.py:predict + hydit/diffusion/pipeline.py, as sample_t2i.py runs them).

The denoising step is one pure function `step(state, latents, t, coefficients, index, keys,
conditions, carry) -> (latents, carry)`, jitted once over the split transformer state: the
timestep, the solver's coefficients and the step index are arrays, so neither another step
nor another step count retraces. The carry is the previous step's x0 prediction (DPM-Solver++
reads it). With a ParallelPlan the weights are sharded by their logical axes (FSDP over the
model width) and the batch over the data axes.
"""

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from tqdm.auto import tqdm

from hyv_jax.convert.hunyuan_dit_checkpoint import (
    abstract_hunyuan_dit,
    restore_hunyuan_dit,
)
from hyv_jax.convert.sdxl_vae_checkpoint import abstract_sdxl_vae, restore_sdxl_vae
from hyv_jax.models.hunyuan_dit.text_encoder import (
    DiTPromptEmbeddings,
    HunyuanDiTTextEncoder,
)
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiT, HunyuanDiTConfig
from hyv_jax.models.hunyuan_dit.vae import SDXLVAE, SDXLVAEConfig
from hyv_jax.parallel.logical_axes import param_shardings, partition_spec
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.sharded_init import init_model
from hyv_jax.sampling.ddpm_solvers import solver_plan, solver_update, step_noise
from hyv_jax.sampling.guidance import combine_cfg
from hyv_jax.sampling.guidance_rescale import rescale_guidance
from hyv_jax.sampling.hunyuan_dit_options import ImageSamplingOptions
from hyv_jax.sampling.noise import initial_noise


@dataclasses.dataclass(frozen=True)
class DiTPaths:
    """Converted folders (convert_torch_weights.py to-jax); None: random weights, for configs
    that allow them (configs/tiny_hunyuan_dit.py)."""

    transformer: str | Path | None = None
    bert: str | Path | None = None
    mt5: str | Path | None = None
    vae: str | Path | None = None

    @classmethod
    def under(cls, root: str | Path) -> "DiTPaths":
        """root/transformer, root/bert, root/mt5, root/vae."""
        root = Path(root)
        return cls(*(root / name for name in ("transformer", "bert", "mt5", "vae")))


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
    def __init__(self, transformer: HunyuanDiT, vae: SDXLVAE, text_encoder: HunyuanDiTTextEncoder | None = None,
                 parallel: ParallelPlan | None = None):
        self.config = transformer.config
        self.vae_config = vae.config
        self.text_encoder = text_encoder
        self.parallel = parallel
        self.graphdef, self.state = nnx.split(transformer)
        self.traces = 0  # how often the step was traced (once per input shapes and solver)
        self._step = jax.jit(self.step, static_argnames="solver")
        vae_graph, self._vae_state = nnx.split(vae)
        self._decode = jax.jit(lambda state, z: _to_uint8(nnx.merge(vae_graph, state).decode(z)))

    @classmethod
    def from_config(cls, config, paths: DiTPaths | None = None, *, seed: int = 0, parallel: ParallelPlan | None = None,
                    load_text_encoder: bool = True) -> "HunyuanDiTPipeline":
        """config: a Hunyuan-DiT config (configs/hunyuan_dit.py). Folders left out of `paths` get
        random weights from `seed`, which only configs with allow_random_weights accept."""
        paths = paths or DiTPaths()
        dit_config = HunyuanDiTConfig.from_mapping(config.transformer)
        vae_config = SDXLVAEConfig.from_mapping(config.vae)
        check_text_sizes(dit_config, config.text_encoder)
        missing = [f.name for f in dataclasses.fields(paths) if getattr(paths, f.name) is None]
        if missing and not config.allow_random_weights:
            raise ValueError(f"no converted folder for {missing}: convert the released weights with convert_torch_weights.py "
                             f"to-jax --model hunyuan_dit|bert|mt5|sdxl_vae --config configs/hunyuan_dit.py and pass them "
                             f"(or a root holding transformer/, bert/, mt5/, vae/)")
        mesh = parallel.mesh if parallel is not None else None
        shardings = lambda abstract: param_shardings(abstract, mesh) if mesh is not None else None  # noqa: E731
        if paths.transformer is not None:
            transformer = restore_hunyuan_dit(paths.transformer, dit_config, shardings(abstract_hunyuan_dit(dit_config)))
        else:
            transformer = init_model(lambda: HunyuanDiT(dit_config, rngs=nnx.Rngs(seed)), mesh)
        if paths.vae is not None:
            vae = restore_sdxl_vae(paths.vae, vae_config, shardings(abstract_sdxl_vae(vae_config)))
        else:
            vae = init_model(lambda: SDXLVAE(vae_config, rngs=nnx.Rngs(seed + 1)), mesh)
        text_encoder = HunyuanDiTTextEncoder.load(config.text_encoder, bert_dir=paths.bert, mt5_dir=paths.mt5, seed=seed + 2,
                                                  mesh=mesh) if load_text_encoder else None
        return cls(transformer, vae, text_encoder, parallel)

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
            return positive
        negative = self.text_encoder.encode([options.negative_prompt]).map(lambda a: np.repeat(a, len(positive.mask), axis=0))
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
               progress: bool = True) -> jax.Array:
        """Latents (B, h, w, 4) from text for B images ([negative; positive] 2B rows with CFG).
        noise: the initial latents (B, h, w, 4); default drawn from the seeds."""
        height, width = options.size
        if options.cfg_scale > 1 and len(text.mask) % 2:
            raise ValueError(f"with classifier-free guidance the text holds [negative; positive] rows, got {len(text.mask)} rows")
        batch = len(text.mask) // 2 if options.cfg_scale > 1 else len(text.mask)
        shape = (height // self.vae_config.scale, width // self.vae_config.scale, self.config.in_channels)
        seeds = [options.seed + i for i in range(batch)]
        latents = initial_noise(seeds, shape, "float32") if noise is None else jnp.asarray(noise, jnp.float32)
        if latents.shape != (batch, *shape):
            raise ValueError(f"initial noise must be {(batch, *shape)}, got {latents.shape}")
        plan = solver_plan(options.solver, options.steps, options.noise_schedule())
        meta, style = self.image_conditions(len(text.mask), height, width, options)
        conditions = self._on_devices(dict(states=text.states, mask=text.mask, states_t5=text.states_t5, mask_t5=text.mask_t5,
                                           meta=meta, style=style, cfg_scale=np.float32(options.cfg_scale),
                                           rescale=np.float32(options.guidance_rescale)))
        keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
        latents, carry = self._on_devices(latents), jnp.zeros_like(latents)
        coefficients, timesteps = jax.device_put(plan.coefficients), jax.device_put(plan.timesteps.astype(np.float32))
        for i in tqdm(range(plan.steps), desc="denoising", unit="step", disable=not progress):
            latents, carry = self._step(self.state, latents, timesteps[i], coefficients[i], np.int32(i), keys, conditions, carry,
                                        solver=plan.solver)
            latents.block_until_ready()  # the bar shows the compute rate, not the dispatch rate
        return latents

    def step(self, state, latents, t, coefficients, index, keys, conditions, carry, *, solver: str):
        """latents at step `index` -> the next latents, and the carry (the x0 prediction)."""
        self.traces += 1
        model = nnx.merge(self.graphdef, state)
        guided = conditions["states"].shape[0] == 2 * latents.shape[0]
        x = jnp.concatenate([latents, latents]) if guided else latents
        out = model(x, jnp.broadcast_to(t, (x.shape[0],)), conditions["states"], conditions["mask"], conditions["states_t5"],
                    conditions["mask_t5"], conditions["meta"], conditions["style"], parallel=self.parallel)
        v = out[..., :self.config.in_channels].astype(jnp.float32)  # the learned variance is not used
        if guided:
            v = rescale_guidance(combine_cfg(v, conditions["cfg_scale"]), jnp.split(v, 2)[1], conditions["rescale"])
        noise = step_noise(keys, index, latents.shape[1:]) if solver == "ddpm" else None
        return solver_update(solver, latents, v, coefficients, noise, carry)

    def decode(self, latents: jax.Array) -> np.ndarray:
        """uint8 images (B, H, W, 3) of latents (the VAE's scaling undone here)."""
        return np.asarray(jax.device_get(self._decode(self._vae_state, latents / self.vae_config.scaling_factor)))

    def _on_devices(self, tree):
        """Host arrays onto the mesh, batch over the data axes (or onto the default device)."""
        if self.parallel is None:
            return jax.device_put(tree)
        mesh, rules = self.parallel.mesh, dict(self.parallel.activation_rules)

        def put(a):
            axes = ("batch", *[None] * (np.ndim(a) - 1)) if np.ndim(a) else ()
            return jax.device_put(a, NamedSharding(mesh, partition_spec(axes, np.shape(a), mesh, rules)))

        return jax.tree.map(put, tree)


def _to_uint8(images: jax.Array) -> jax.Array:
    """[-1, 1] -> uint8 as diffusers' VaeImageProcessor: clip(x / 2 + 0.5) * 255, rounded."""
    return jnp.round(jnp.clip(images.astype(jnp.float32) / 2 + 0.5, 0, 1) * 255).astype(jnp.uint8)

