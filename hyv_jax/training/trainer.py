"""The train state and the jitted training step on a mesh.

The model is split once into (graphdef, trainable, frozen): trainable is every Param for full
training, or only the LoRA adapters; frozen is the rest (the base weights under LoRA). The
train state {step, rng, params, opt_state[, ema]} lives on the plan's mesh with the parameters'
logical shardings (the optimizer moments follow them), and one step is compiled once with
explicit in/out shardings and the state donated. The model runs under the ParallelPlan, so its
context (sequence) parallel strategy applies to training too.
"""

import dataclasses
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hyv_jax.parallel.logical_axes import param_shardings
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.parallel.processes import barrier, check_same_everywhere, from_local_rows, local_rows
from hyv_jax.training.caption_dropout import drop_captions
from hyv_jax.training.flow_matching import flow_matching_loss, noisy_latents, sample_time
from hyv_jax.training.latent_records import FIELDS
from hyv_jax.training.optimizer import make_optimizer

BATCH_AXES = ("data", "fsdp")  # mesh axes the global batch is split over


@dataclasses.dataclass(frozen=True)
class StepMetrics:
    loss: float
    grad_norm: float
    lr: float
    seconds: float


def batch_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
    axes = tuple(a for a in BATCH_AXES if a in mesh.shape and mesh.shape[a] > 1)
    n = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if batch_size % n:
        raise ValueError(f"global batch {batch_size} must be divisible by the mesh's data*fsdp size {n} "
                         f"(mesh {dict(mesh.shape)}): change training.batch_size or parallel.mesh")
    return NamedSharding(mesh, PartitionSpec(axes or None))


def _state_shardings(state: nnx.State, by_path: Mapping[tuple[str, ...], NamedSharding], mesh: Mesh) -> nnx.State:
    replicated = NamedSharding(mesh, PartitionSpec())
    flat = [(path, by_path.get(tuple(str(p) for p in path), replicated)) for path, _ in nnx.to_flat_state(state)]
    return nnx.from_flat_state(flat)


class Trainer:
    """Owns the train state; `step(batch)` runs one optimisation step."""

    def __init__(self, model: nnx.Module, cfg, plan: ParallelPlan, *, lora: bool = False,
                 negative_prompt: Mapping[str, Mapping[str, np.ndarray]] | None = None):
        """cfg: the `training` config section; model: a HunyuanVideoTransformer (with LoRA
        adapters injected when `lora`); plan: the mesh and context strategy
        (ParallelPlan.from_config(config.parallel)); negative_prompt: the data's encodings of the default
        negative prompt per template (caption_dropout.load_negative_prompt), needed when cfg.caption_dropout > 0."""
        if not 0.0 <= cfg.caption_dropout < 1.0:
            raise ValueError(f"training.caption_dropout {cfg.caption_dropout} must be in [0, 1)")
        if cfg.caption_dropout > 0 and negative_prompt is None:
            raise ValueError("training.caption_dropout > 0 needs the negative prompt's encodings (caption_dropout.load_negative_prompt)")
        self.cfg = cfg
        self.plan = plan
        self.mesh = mesh = plan.mesh
        self.lora = lora
        trainable = nnx.LoRAParam if lora else nnx.Param
        self.graphdef, params, frozen = nnx.split(model, trainable, ...)
        if not jax.tree.leaves(params):
            raise ValueError("nothing to train: LoRA training needs adapters injected (training.lora.targets)")
        self.optimizer, self.schedule = make_optimizer(cfg.optimizer, cfg.steps)
        by_path = param_shardings(model, mesh)
        self.param_shardings = _state_shardings(params, by_path, mesh)
        self.frozen = jax.device_put(frozen, _state_shardings(frozen, by_path, mesh))
        self.batch_sharding = batch_sharding(mesh, cfg.batch_size)
        # the rows of each global batch this process feeds (data_pipeline.training_batches(rows=...))
        self.batch_rows = local_rows(self.batch_sharding, cfg.batch_size)
        self.state = self._init_state(jax.device_put(params, self.param_shardings))
        self.state_shardings = jax.tree.map(lambda x: x.sharding, self.state)
        replicated = NamedSharding(mesh, PartitionSpec())
        # an argument, not a constant of the program: the 13B's negative prompt is megabytes
        self.negative_prompt = jax.device_put(negative_prompt if cfg.caption_dropout > 0 else {}, replicated)
        self._step = jax.jit(
            self._train_step,
            in_shardings=(self.state_shardings, jax.tree.map(lambda x: x.sharding, self.frozen), self.batch_sharding, replicated),
            out_shardings=(self.state_shardings, NamedSharding(mesh, PartitionSpec())),
            donate_argnums=(0,),
        )
        self._compiled: dict[tuple, tuple] = {}  # batch shapes (one per bucket) -> (executable, flops)
        self.flops_per_step: float | None = None

    def _init_state(self, params: nnx.State) -> dict:
        rep = NamedSharding(self.mesh, PartitionSpec())
        state = {
            "step": jax.device_put(jnp.zeros((), jnp.int32), rep),
            "rng": jax.device_put(jax.random.key_data(jax.random.key(self.cfg.seed)), rep),
            "params": params,
            "opt_state": jax.jit(self.optimizer.init, out_shardings=self._opt_state_shardings(params))(params),
        }
        if self.cfg.ema_decay > 0:
            state["ema"] = jax.tree.map(jnp.copy, params)
        return state

    def _opt_state_shardings(self, params: nnx.State):
        """Optimizer moments shard like their parameters; counters are replicated."""
        rep = NamedSharding(self.mesh, PartitionSpec())
        abstract = jax.eval_shape(self.optimizer.init, params)
        by_leaf = jax.tree.map(lambda x: x.sharding, params)
        return optax.tree_map_params(self.optimizer, lambda _, sharding: sharding, abstract, by_leaf,
                                     transform_non_params=lambda _: rep)

    def loss(self, params: nnx.State, frozen: nnx.State, batch: Mapping[str, jax.Array], rng: jax.Array,
             negative_prompt: Mapping | None = None) -> jax.Array:
        cfg = self.cfg
        model = nnx.merge(self.graphdef, params, frozen)
        x0 = batch["latents"]
        if cfg.caption_dropout > 0:  # a key of its own: the time and noise draws stay those of a run without dropout
            template = "image" if x0.shape[1] == 1 else "video"
            batch = drop_captions(batch, negative_prompt[template], jax.random.fold_in(rng, 1), cfg.caption_dropout)
        k_t, k_noise = jax.random.split(rng)
        t = sample_time(k_t, x0.shape[0], mean=cfg.time_mean, std=cfg.time_std, shift=cfg.time_shift)
        noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
        x_t, target = noisy_latents(x0.astype(jnp.float32), noise, t)
        guidance = jnp.full((x0.shape[0],), cfg.guidance * 1000.0, jnp.float32) if model.config.guidance_embed else None
        pred = model(x_t, t * 1000.0, batch["text_states"], batch["text_mask"], batch["text_pooled"], guidance,
                     parallel=self.plan)
        return flow_matching_loss(pred, target, t, cfg.loss_weighting)

    def _train_step(self, state: dict, frozen: nnx.State, batch: Mapping[str, jax.Array], negative_prompt: Mapping):
        # One key per step from the seed: a resumed run draws exactly what an unbroken one does.
        rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        loss, grads = jax.value_and_grad(self.loss)(state["params"], frozen, batch, rng, negative_prompt)
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        new = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
        if "ema" in state:
            d = self.cfg.ema_decay
            new["ema"] = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state["ema"], params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": self.schedule(state["step"])}
        return new, metrics

    def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        missing = [k for k in FIELDS if k not in batch]
        if missing:
            raise ValueError(f"training batch lacks {missing}; it needs {FIELDS}")
        wrong = {k: np.shape(batch[k]) for k in FIELDS if len(batch[k]) != len(self.batch_rows)}
        if wrong:
            raise ValueError(f"this process feeds rows {self.batch_rows} of each global batch of {self.cfg.batch_size}, "
                             f"but its batch has shapes {wrong}")
        return {k: from_local_rows(np.asarray(batch[k]), self.batch_rows, self.batch_sharding, self.cfg.batch_size)
                for k in FIELDS}

    def step(self, batch: Mapping[str, np.ndarray]) -> StepMetrics:
        if not self._compiled:
            barrier("first step")  # start-up skew (e.g. cached compiles on one host) ends here
        # All processes must feed one global shape, or each would compile another program.
        check_same_everywhere([d for k in FIELDS for d in np.shape(batch[k])[1:]], "the shapes of this step's batch")
        batch = self.put_batch(batch)
        key = tuple(batch[k].shape for k in FIELDS)
        if key not in self._compiled:
            compiled = self._step.lower(self.state, self.frozen, batch, self.negative_prompt).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list | tuple) else cost
            self._compiled[key] = compiled, (float(cost["flops"]) if cost and "flops" in cost else None)
            # A host that compiled from the persistent cache waits here for the others instead of
            # in the step's first collective, which gloo (CPU) abandons after 30 s.
            barrier("compiled")
        compiled, self.flops_per_step = self._compiled[key]
        start = time.perf_counter()
        self.state, metrics = compiled(self.state, self.frozen, batch, self.negative_prompt)
        metrics = jax.device_get(metrics)
        return StepMetrics(float(metrics["loss"]), float(metrics["grad_norm"]), float(metrics["lr"]), time.perf_counter() - start)

    @property
    def step_count(self) -> int:
        return int(self.state["step"])

    def model(self, use_ema: bool = False) -> nnx.Module:
        """The model with the current (or EMA) trained parameters."""
        params = self.state["ema"] if use_ema else self.state["params"]
        return nnx.merge(self.graphdef, params, self.frozen)
