"""Named rematerialisation policies for the scanned blocks: what the backward pass keeps."""

from collections.abc import Callable

import jax

# "none": keep every activation (fastest, most memory); "full": keep only the block inputs;
# "dots": keep matmul outputs; "dots_no_batch": keep matmul outputs without batch dimensions
# (the weight-like ones), recomputing attention scores and elementwise work.
REMAT_POLICIES: dict[str, Callable | None] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def remat(fn: Callable, policy: str) -> Callable:
    """`fn` under `jax.checkpoint` with the named policy ("none" returns it unchanged)."""
    if policy == "none":
        return fn
    if policy not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; choose one of {['none', *REMAT_POLICIES]}")
    return jax.checkpoint(fn, policy=REMAT_POLICIES[policy], prevent_cse=False)
