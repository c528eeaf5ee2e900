"""The Euler solver of the flow ODE, in float32 whatever the model dtype (as upstream)."""

import jax
import jax.numpy as jnp


def euler_step(latents: jax.Array, velocity: jax.Array, sigma: jax.Array, sigma_next: jax.Array) -> jax.Array:
    """x <- x + v * (sigma_next - sigma); sigma decreases, so this moves toward the data."""
    dt = jnp.asarray(sigma_next, jnp.float32) - jnp.asarray(sigma, jnp.float32)
    return latents.astype(jnp.float32) + velocity.astype(jnp.float32) * dt
