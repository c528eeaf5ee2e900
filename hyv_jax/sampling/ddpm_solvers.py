"""Solvers of a DDPM-trained (discrete 1000-step, v-prediction) model, as diffusers'
schedulers run them with Hunyuan-DiT's settings (hydit/constants.py:SAMPLER_FACTORY):

  ddpm    DDPMScheduler: "leading" timesteps + 1, fixed-small variance; draws noise every step
          (upstream's default sampler).
  ddim    DDIMScheduler: the same timesteps, eta 0 (deterministic), alpha_prod at -1 is 1.
  dpmms   DPMSolverMultistepScheduler: DPM-Solver++ 2M (midpoint), "linspace" timesteps,
          first order at the first and the last step (final sigma 0); carries the previous
          step's x0 prediction.

Everything that depends only on the step index is computed once on the host in float32, with
the reference's operation order, into a (steps, K) coefficient table: the jitted step reads row
i as an array, so one compiled step serves every step and every step count.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

SOLVERS = ("ddpm", "ddim", "dpmms")
BETA_SCHEDULES = ("linear", "scaled_linear")
TRAIN_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """The training noise schedule (upstream --noise-schedule, --beta-start, --beta-end)."""

    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.02
    prediction_type: str = "v_prediction"

    def __post_init__(self):
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.prediction_type != "v_prediction":
            raise ValueError(f"the released Hunyuan-DiT models predict v; prediction_type {self.prediction_type!r} is not supported")

    def alphas_cumprod(self) -> np.ndarray:
        """(1000,) float32 (a float32 linspace, squared for scaled_linear, as diffusers; its
        vectorised torch.linspace rounds some entries an ulp differently)."""
        if self.beta_schedule == "scaled_linear":
            betas = np.square(np.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, TRAIN_STEPS).astype(np.float32))
        else:
            betas = np.linspace(self.beta_start, self.beta_end, TRAIN_STEPS).astype(np.float32)
        return np.cumprod(np.float32(1.0) - betas, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class SolverPlan:
    solver: str
    timesteps: np.ndarray  # (steps,) int, the model's t per step
    coefficients: np.ndarray  # (steps, K) float32, the solver's per-step scalars

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def draws_noise(self) -> bool:
        return self.solver == "ddpm"


def solver_plan(solver: str, steps: int, schedule: NoiseSchedule) -> SolverPlan:
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {SOLVERS}")
    if not 1 <= steps <= TRAIN_STEPS:
        raise ValueError(f"steps must be in 1..{TRAIN_STEPS}, got {steps}")
    ac = schedule.alphas_cumprod()
    one = np.float32(1.0)
    if solver in ("ddpm", "ddim"):
        ratio = TRAIN_STEPS // steps
        timesteps = np.arange(steps)[::-1] * ratio + 1  # "leading" spacing, steps_offset 1
        rows = []
        for i, t in enumerate(timesteps):
            # DDPM steps to the next timestep of the plan, DDIM to t - 1000 // steps
            prev = (timesteps[i + 1] if i + 1 < steps else -1) if solver == "ddpm" else t - ratio
            a_t, a_prev = ac[t], (ac[prev] if prev >= 0 else one)
            b_t, b_prev = one - a_t, one - a_prev
            if solver == "ddpm":
                alpha, beta = a_t / a_prev, one - a_t / a_prev
                variance = np.maximum(b_prev / b_t * beta, np.float32(1e-20)) if t > 0 else np.float32(0.0)
                rows.append([np.sqrt(a_t), np.sqrt(b_t), np.sqrt(a_prev) * beta / b_t, np.sqrt(alpha) * b_prev / b_t,
                             np.sqrt(variance)])
            else:
                rows.append([np.sqrt(a_t), np.sqrt(b_t), np.sqrt(a_prev), np.sqrt(one - a_prev)])
        return SolverPlan(solver, timesteps.astype(np.int32), np.array(rows, np.float32))
    timesteps = np.linspace(0, TRAIN_STEPS - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    sigmas = np.sqrt((one - ac) / ac).astype(np.float32)[timesteps]
    sigmas = np.concatenate([sigmas, [np.float32(0.0)]]).astype(np.float32)
    alphas = (one / np.sqrt(np.square(sigmas) + one)).astype(np.float32)
    sigma_t = (sigmas * alphas).astype(np.float32)
    with np.errstate(divide="ignore"):
        lambdas = (np.log(alphas) - np.log(sigma_t)).astype(np.float32)
    rows = []
    for i in range(steps):
        h = lambdas[i + 1] - lambdas[i]
        decay = alphas[i + 1] * (np.exp(-h) - one)
        # first order at the first step and at the last (final sigma 0: lower_order_final)
        second = 0 < i < steps - 1
        inv_r0 = one / ((lambdas[i] - lambdas[i - 1]) / h) if second else np.float32(0.0)
        rows.append([alphas[i], sigma_t[i], sigma_t[i + 1] / sigma_t[i], decay, np.float32(0.5) * decay if second else 0.0, inv_r0])
    return SolverPlan(solver, timesteps.astype(np.int32), np.array(rows, np.float32))


def solver_update(solver: str, sample: jax.Array, v: jax.Array, coefficients: jax.Array, noise: jax.Array | None,
                  carry: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step: (sample at t, v-prediction, the plan's row for this step, noise (ddpm), carry)
    -> (sample at the next timestep, carry: this step's x0 prediction)."""
    c = [coefficients[k] for k in range(coefficients.shape[0])]
    if solver == "ddpm":
        x0 = c[0] * sample - c[1] * v
        return c[2] * x0 + c[3] * sample + c[4] * noise, x0
    if solver == "ddim":
        x0 = c[0] * sample - c[1] * v
        eps = c[0] * v + c[1] * sample
        return c[2] * x0 + c[3] * eps, x0
    x0 = c[0] * sample - c[1] * v
    return c[2] * sample - c[3] * x0 - c[4] * (c[5] * (x0 - carry)), x0


def step_noise(keys: jax.Array, index: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """The ddpm solver's noise at step `index`: (B, *shape) float32, sample b from keys[b]
    (its own seed, so a sample does not depend on its batch)."""
    return jax.vmap(lambda key: jax.random.normal(jax.random.fold_in(key, index + 1), shape, jnp.float32))(keys)
