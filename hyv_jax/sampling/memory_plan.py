"""The device memory of a text-to-video run, planned before any weight loads: what
`sample.py --dry-run` prints, and what refuses a run that cannot fit its devices.

A pipeline call has three phases: encode (the text encoders), denoise (the DiT's compiled
step) and decode (the VAE, tile by tile). Per device and phase the plan adds:

- weights: exact, from the abstract models with the shardings, dtypes and memory kinds loading
  gives them (fp8 values and scales; offloaded blocks count as host memory);
- step inputs (latents, text conditions, cache carry): exact, from their shapes and shardings;
- activations: `memory_analysis()` of the real programs lowered abstractly for these shapes
  (the denoising step with its attention, one streamed block in offload mode; the LLM and CLIP
  forwards; the VAE's largest decode tile): the size of the temporary buffers XLA assigns;
- the decoded video: arithmetic (the tiles joined in the VAE dtype, then three float32 copies
  while frames.py scales and clips it).

On a GPU or TPU the programs are compiled as they will run. A CPU host has no accelerator to
compile for, so there the plan stands in for one and says so: the scanned stacks are compiled
with one layer (their temporaries do not grow with depth on an accelerator, while XLA:CPU keeps
float32 copies of every bfloat16 layer it scans), the joint attention is the Pallas flash
kernel run by the interpreter (its workspace is the kernel's blocks, as cuDNN's and splash's
are, where CPU attention would hold all L x L scores), and code generation is cheap (buffer
assignment, hence the figures, is unchanged). XLA:CPU computes bfloat16 matmuls in float32, so
the activations it reports are an upper estimate of an accelerator's.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from hyv_jax.convert.text_checkpoint import CLIP, LLM, abstract_model
from hyv_jax.convert.vae_checkpoint import abstract_vae
from hyv_jax.loading.memory_modes import DEVICE, MemoryMode
from hyv_jax.loading.models import TransformerLoader, shardings_for
from hyv_jax.models.text.llama import LlamaConfig
from hyv_jax.models.transformer import TransformerConfig
from hyv_jax.models.vae import VAEConfig
from hyv_jax.models.vae_tiling import UNTILED, tiled_apply
from hyv_jax.nn.backend_form import accelerator_form
from hyv_jax.parallel.plan import ParallelPlan, local_mesh
from hyv_jax.sampling.denoise import CompiledStep, FullModel, StepConditions
from hyv_jax.sampling.first_block_cache import FirstBlockCache
from hyv_jax.sampling.guidance import embedded_guidance
from hyv_jax.sampling.noise import latent_shape
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.residency import check_residency

GiB = 1 << 30
PHASES = ("encode", "denoise", "decode")
# hyvideo/constants.py:53,57 (crop_start): the template tokens cropped from the LLM states, used
# when the plan has no tokenizer to count them with (the pipeline counts them, see templates.py)
UPSTREAM_CROPS = {"video": 95, "image": 36}
# codegen settings for the CPU stand-in compiles: buffer assignment is unchanged, compiling is ~2x faster
CHEAP_CODEGEN = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@dataclasses.dataclass(frozen=True)
class Part:
    phase: str  # encode | denoise | decode
    what: str
    bytes: int
    how: str  # "exact" (shapes) | "compiled" (memory_analysis) | "arithmetic"


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device of each part of a run (the resident DiT counted in every phase it
    stays through)."""

    description: str
    target: str
    mode: str
    residency: str
    video_tokens: int
    text_tokens: int
    model_batch: int
    flops_per_step: float
    parts: tuple[Part, ...]
    host_bytes: int  # the DiT's weights in host memory (offload), per process
    capacity: int | None  # the device's memory, where it reports it

    def phase_bytes(self, phase: str) -> int:
        return sum(p.bytes for p in self.parts if p.phase == phase)

    @property
    def peak(self) -> tuple[int, str]:
        return max((self.phase_bytes(ph), ph) for ph in PHASES)

    def part(self, phase: str, what: str) -> int:
        return sum(p.bytes for p in self.parts if p.phase == phase and p.what == what)

    def summary(self) -> dict:
        peak, phase = self.peak
        return {
            "weights_device_bytes": self.part("denoise", "DiT weights"),
            "activations_device_bytes": self.part("denoise", "step activations"),
            "step_inputs_device_bytes": self.part("denoise", "step inputs"),
            "text_encoders_device_bytes": self.part("encode", "text encoder weights") + self.part("encode", "text encoder activations"),
            "vae_weights_device_bytes": self.part("decode", "VAE weights"),
            "vae_decode_peak_bytes": self.part("decode", "VAE decode"),
            "peak_device_bytes": peak,
            "peak_phase": phase,
            "phases": {ph: {what: self.part(ph, what) for what in dict.fromkeys(p.what for p in self.parts if p.phase == ph)}
                       for ph in PHASES},
            "host_weights_bytes": self.host_bytes,
            "device_capacity_bytes": self.capacity,
            "tokens": self.video_tokens + self.text_tokens,
            "video_tokens": self.video_tokens,
            "text_tokens": self.text_tokens,
            "model_batch": self.model_batch,
            "flops_per_step": self.flops_per_step,
            "mode": self.mode,
            "residency": self.residency,
            "target": self.target,
        }

    def lines(self) -> list[str]:
        peak, phase = self.peak
        unit, name = (GiB, "GiB") if peak >= GiB else (1 << 20, "MiB")
        out = [self.description,
               f"tokens: {self.video_tokens:,} video + {self.text_tokens} text = {self.video_tokens + self.text_tokens:,} per sample, "
               f"model batch {self.model_batch}; {self.flops_per_step / 1e12:,.1f} TFLOP per step (arithmetic: "
               f"24 D^2 L linear + 4 L^2 D attention per block, over all devices)",
               f"target: {self.target}; weights {self.mode}; residency {self.residency}",
               f"per device, {name:<33}" + "".join(f"{ph:>9}" for ph in PHASES) + "  (how)"]
        for what in dict.fromkeys(p.what for p in self.parts):
            cells = [self.part(ph, what) for ph in PHASES]
            how = next(p.how for p in self.parts if p.what == what)
            out.append(f"  {what:<40}" + "".join(f"{c / unit:>9.2f}" if c else f"{'-':>9}" for c in cells) + f"  ({how})")
        out.append(f"  {'total':<40}" + "".join(f"{self.phase_bytes(ph) / unit:>9.2f}" for ph in PHASES))
        fits = "" if self.capacity is None else f" of the device's {self.capacity / unit:.1f} {name}"
        out.append(f"peak {peak / unit:.2f} {name} per device ({phase}){fits}"
                   + (f"; the DiT's offloaded blocks take {self.host_bytes / unit:.2f} {name} of pinned host memory" if self.host_bytes else ""))
        return out

    def with_residency(self, residency: str) -> "MemoryPlan":
        """The same plan under another residency (only which phases hold the DiT changes)."""
        dit = [p for p in self.parts if p.what == "DiT weights" and p.phase == "denoise"]
        kept = [dataclasses.replace(p, phase=ph) for p in dit for ph in ("encode", "decode")] if residency == "resident" else []
        parts = [p for p in self.parts if p.what != "DiT weights" or p.phase == "denoise"] + kept
        return dataclasses.replace(self, residency=check_residency(residency), parts=tuple(parts))


def device_capacity() -> int | None:
    """Bytes of memory of this process's first device, where the backend reports it."""
    stats = jax.local_devices()[0].memory_stats()
    return stats.get("bytes_limit") if stats else None


def flops_per_step(config: TransformerConfig, video_tokens: int, text_tokens: int, batch: int) -> float:
    """Forward FLOPs of one denoising step (shared/spec/PERFORMANCE.md's count): per block and
    token (4 + 2 * mlp_ratio) D^2 weights (12 D^2), 2 FLOPs each, plus 4 L^2 D of attention."""
    d, length = config.hidden_size, video_tokens + text_tokens
    per_block = 2 * (4 + 2 * config.mlp_ratio) * d * d * length + 4 * length * length * d
    return float(batch * (config.double_blocks + config.single_blocks) * per_block)


def plan_memory(config, options: SamplingOptions, *, parallel: ParallelPlan | None = None, memory: MemoryMode = MemoryMode(),
                residency: str = "resident", text_length: int | None = None, capacity: int | None = None) -> MemoryPlan:
    """The plan of `config` (a model config's transformer, vae and text_encoder sections)
    sampling `options` on this job's devices (or `parallel`'s mesh), the DiT held per `memory`.
    `text_length`: LLM tokens after the template crop (default: the config's max length minus
    upstream's crop). Compiles programs; loads no weights."""
    tc, vc = TransformerConfig.from_mapping(config.transformer), VAEConfig.from_mapping(config.vae)
    text_length = text_length or config.text_encoder.llm_max_length - UPSTREAM_CROPS["image" if options.frames == 1 else "video"]
    step = step_program(tc, vc, options, text_length, parallel=parallel, memory=memory)
    prompts = 2 if options.true_cfg else 1
    encoders = [part for spec, section, length in ((LLM, "llm", config.text_encoder.llm_max_length),
                                                   (CLIP, "clip", config.text_encoder.clip_max_length))
                for part in encoder_parts(spec, spec.config_from_mapping(config.text_encoder[section]), prompts, length, parallel)]
    lat = _latent(tc, vc, options)
    video_tokens = math.prod(n // p for n, p in zip(lat, tc.patch_size, strict=True))
    model_batch = options.num_videos * prompts
    description = (f"memory plan: {tc.double_blocks}+{tc.single_blocks} blocks of width {tc.hidden_size} "
                   f"({_param_count(TransformerLoader(tc).abstract()) / 1e9:.2f}B parameters), "
                   f"{options.height}x{options.width}x{options.frames} -> latents {lat[0]}x{lat[1]}x{lat[2]}, "
                   f"{options.num_videos} video(s){', true CFG' if options.true_cfg else ''}")
    plan = MemoryPlan(description, _target(parallel), memory.name, "sequential", video_tokens, text_length, model_batch,
                      flops_per_step(tc, video_tokens, text_length, model_batch),
                      tuple(step.parts() + encoders + decode_parts(vc, options)), _host_bytes(step.state), capacity)
    return plan.with_residency(residency)


@dataclasses.dataclass(frozen=True)
class StepProgram:
    """The denoising step of a run, compiled against abstract arguments (on a CPU host: the
    stand-in, see the module docstring), with those arguments."""

    compiled: jax.stages.Compiled
    state: nnx.State  # the placed DiT state (full depth), ShapeDtypeStructs
    latents: jax.ShapeDtypeStruct
    conditions: StepConditions
    carry: object

    def parts(self) -> list[Part]:
        analysis = self.compiled.memory_analysis()
        return [Part("denoise", "DiT weights", _device_bytes(self.state), "exact"),
                Part("denoise", "step inputs", _device_bytes((self.latents, self.conditions, self.carry)), "exact"),
                Part("denoise", "step outputs", analysis.output_size_in_bytes, "compiled"),
                Part("denoise", "step activations", analysis.temp_size_in_bytes, "compiled")]


def step_program(tc: TransformerConfig, vc: VAEConfig, options: SamplingOptions, text_length: int, *,
                 parallel: ParallelPlan | None = None, memory: MemoryMode = MemoryMode(), standin: bool | None = None) -> StepProgram:
    """The step of `tc` sampling `options` with `text_length` text tokens, compiled for the
    abstract state loading gives (`memory`, `parallel`'s mesh). `standin` (default: on a CPU
    host) compiles the CPU stand-in of the module docstring, which plans but cannot run the
    full-depth state; else the real program, runnable with real arguments of the same
    shapes and shardings."""
    mesh = parallel.mesh if parallel else None
    standin = _standin() if standin is None else standin
    _, state = TransformerLoader(tc, mesh=mesh, memory=memory).placed_abstract()
    compiled = dataclasses.replace(tc, double_blocks=1, single_blocks=1, attention_impl=(
        "pallas_gpu_interpret" if tc.attention_impl == "auto" else tc.attention_impl)) if standin else tc
    graphdef, compiled_state = TransformerLoader(compiled, mesh=mesh, memory=memory).placed_abstract()
    model_batch = options.num_videos * (2 if options.true_cfg else 1)
    latents, conditions = _step_inputs(tc, options, parallel, text_length,
                                       (options.num_videos, *_latent(tc, vc, options, channels=True)), model_batch)
    policy, carry = _policy(TransformerLoader(tc).abstract(), options, (latents, conditions), parallel)
    lowered = CompiledStep(graphdef, policy, parallel).lower(compiled_state, latents, *_scalars(3), conditions, carry)
    return StepProgram(lowered.compile(compiler_options=CHEAP_CODEGEN if standin else None), state, latents, conditions, carry)


def encoder_parts(spec, model_config, prompts: int, length: int, parallel: ParallelPlan | None) -> list[Part]:
    """A text encoder's weights and forward activations per device (encode phase); the
    encoders run on each process's own devices, sharded over them on a mesh."""
    mesh = local_mesh() if parallel else None
    abstract = abstract_model(spec, model_config)
    _, state = nnx.split(abstract)
    weights = _device_bytes(_placed(state, shardings_for(abstract, mesh)))
    if _standin():  # one layer: see the module docstring
        layers = {"output_layer": 1, "num_layers": 2} if isinstance(model_config, LlamaConfig) else {"num_layers": 1}
        abstract = abstract_model(spec, dataclasses.replace(model_config, **layers))
    graphdef, state = nnx.split(abstract)
    tokens = jax.ShapeDtypeStruct((prompts, length), np.int32, sharding=_replicated(mesh))
    lowered = jax.jit(lambda s, ids, mask: nnx.merge(graphdef, s)(ids, mask)).lower(
        _placed(state, shardings_for(abstract, mesh)), tokens, tokens)
    temp = lowered.compile(compiler_options=CHEAP_CODEGEN if _standin() else None).memory_analysis().temp_size_in_bytes
    return [Part("encode", "text encoder weights", weights, "exact"), Part("encode", "text encoder activations", temp, "compiled")]


def decode_parts(vc: VAEConfig, options: SamplingOptions) -> list[Part]:
    """The VAE's weights (every phase: it stays) and its decode on one device: the largest
    tile's program (input, temporaries, output) plus the tiles decoded so far, or the three
    float32 copies of the video at the end (frames.py), whichever is larger."""
    abstract = abstract_vae(vc)
    graphdef, state = nnx.split(abstract)
    placed_state = _placed(state, shardings_for(abstract, None))
    tiles = {}  # tile shape -> decoded shape

    def record(z):  # stands in for the decoder while the tiling is traced
        if z.shape not in tiles:
            tiles[z.shape] = jax.eval_shape(lambda s, t: nnx.merge(graphdef, s).decode_frames(t), placed_state,
                                            jax.ShapeDtypeStruct(z.shape, z.dtype))
        return jnp.zeros(tiles[z.shape].shape, tiles[z.shape].dtype)

    dtype = np.dtype(vc.dtype)
    latents = jax.ShapeDtypeStruct((options.num_videos, *latent_shape(options.frames, options.height, options.width,
                                                                      vc.latent_channels, vc.temporal_ratio, vc.spatial_ratio)), dtype)
    video = jax.eval_shape(lambda z: tiled_apply(record, z, vc.decode_plan() if options.vae_tiling else UNTILED), latents)
    tile = max(tiles, key=math.prod)
    with accelerator_form():  # the layers as a GPU/TPU runs them, not in their CPU forms (nn/backend_form.py)
        program = jax.jit(lambda s, z: nnx.merge(graphdef, s).decode_frames(z)).lower(
            placed_state, jax.ShapeDtypeStruct(tile, dtype, sharding=_replicated(None))).compile(
            compiler_options=CHEAP_CODEGEN if _standin() else None)
    analysis = program.memory_analysis()
    tile_peak = math.prod(tile) * dtype.itemsize + analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    frames = math.prod(video.shape)
    weights = _device_bytes(placed_state)
    return [*(Part(phase, "VAE weights", weights, "exact") for phase in PHASES),
            Part("decode", "VAE decode", max(tile_peak + frames * dtype.itemsize, 3 * frames * 4), "compiled + arithmetic")]


def choose_residency(plan: MemoryPlan, requested: str = "auto") -> MemoryPlan:
    """`requested` ("auto": resident where that fits the device, else sequential) -> the plan
    under it. Raises ValueError, saying what would help, when the device cannot hold it."""
    if requested != "auto":
        plan = plan.with_residency(requested)
    elif plan.capacity is not None and plan.with_residency("resident").peak[0] > plan.capacity:
        plan = plan.with_residency("sequential")
    else:
        plan = plan.with_residency("resident")
    if plan.capacity is not None and plan.peak[0] > plan.capacity:
        peak, phase = plan.peak
        advice = [a for a, on in (("--use-fp8", "fp8" not in plan.mode), ("--use-cpu-offload", "offload" not in plan.mode),
                                  ("--residency sequential", plan.residency != "sequential")) if on]
        advice += ["a smaller --video-size / --video-length", "more devices (--ulysses-degree / --ring-degree)"]
        raise ValueError(f"this run needs about {peak / GiB:.1f} GiB per device ({phase}) but the device has {plan.capacity / GiB:.1f} GiB; "
                         f"try {', '.join(advice)} (sample.py --dry-run prints the plan)")
    return plan


# -- pieces --

def _standin() -> bool:
    """Whether the programs are compiled for a stand-in accelerator (on a CPU host)."""
    return jax.default_backend() == "cpu"


def _target(parallel: ParallelPlan | None) -> str:
    devices = "one device" if parallel is None else (
        f"{parallel.mesh.size} devices (" + " x ".join(f"{k} {v}" for k, v in parallel.mesh.shape.items()) + ")")
    if _standin():
        return f"{devices} of this CPU host, planned as for an accelerator (see hyv_jax/sampling/memory_plan.py)"
    return f"{devices}, {jax.local_devices()[0].device_kind}"


def _latent(tc: TransformerConfig, vc: VAEConfig, options: SamplingOptions, channels: bool = False) -> tuple[int, ...]:
    shape = latent_shape(options.frames, options.height, options.width, tc.in_channels, vc.temporal_ratio, vc.spatial_ratio)
    return shape if channels else shape[:3]


def _replicated(mesh) -> jax.sharding.Sharding:
    return SingleDeviceSharding(jax.local_devices()[0]) if mesh is None else NamedSharding(mesh, PartitionSpec())


def _scalars(n: int):
    return [jax.ShapeDtypeStruct((), np.float32)] * n


def _step_inputs(tc: TransformerConfig, options, parallel, text_length, latents_shape, model_batch):
    """Abstract (latents, conditions) as TextToVideoPipeline.sample_latents places them."""
    def placed(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=parallel.batch_sharding(shape) if parallel else _replicated(None))

    guidance = embedded_guidance(options.embedded_guidance if tc.guidance_embed else None, model_batch, tc.dtype)
    conditions = StepConditions(placed((model_batch, text_length, tc.text_states_dim), np.float32),
                                placed((model_batch, text_length), np.int32), placed((model_batch, tc.text_states_dim_2), np.float32),
                                None if guidance is None else placed(guidance.shape, np.float32), placed((), np.float32), {})
    return placed(latents_shape, np.float32), conditions


def _policy(abstract_model, options, inputs, parallel):
    """(velocity policy, abstract first carry) as TextToVideoPipeline.policy gives them."""
    if not options.first_block_cache:
        return FullModel(), ()
    x_shape = (inputs[1].text_states.shape[0], *inputs[0].shape[1:])
    carry = FirstBlockCache.init_carry(abstract_model, x_shape, inputs[1], options.first_block_cache)
    sharding = _replicated(parallel.mesh if parallel else None)
    return FirstBlockCache(), jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=sharding), carry)


def _placed(state: nnx.State, shardings) -> nnx.State:
    """An abstract state with each parameter's ShapeDtypeStruct given its sharding."""
    flat = {tuple(str(k) for k in path): var for path, var in nnx.to_flat_state(state)}
    for path, var in flat.items():
        value = var.get_value()
        var.set_value(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=shardings[path]))
    return state


def _leaves(tree):
    return [a for a in jax.tree.leaves(tree) if hasattr(a, "shape")]


def _shard_bytes(a) -> int:
    sharding = getattr(a, "sharding", None)
    shape = sharding.shard_shape(a.shape) if sharding is not None else a.shape
    return math.prod(shape) * np.dtype(a.dtype).itemsize


def _memory_kind(a) -> str:
    kind = getattr(getattr(a, "sharding", None), "memory_kind", None)
    return kind or DEVICE


def _device_bytes(tree) -> int:
    """Bytes one device holds of the arrays of `tree` in device memory."""
    return sum(_shard_bytes(a) for a in _leaves(tree) if _memory_kind(a) == DEVICE)


def _host_bytes(tree) -> int:
    """Bytes of `tree`'s arrays in host memory, over this process's devices."""
    return sum(_shard_bytes(a) * len(a.sharding.addressable_devices) for a in _leaves(tree) if _memory_kind(a) != DEVICE)


def _param_count(abstract) -> int:
    return sum(math.prod(a.shape) for a in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
