"""Named rematerialisation policies for the scanned blocks: what the backward pass keeps.

The blocks name their largest activations with `jax.ad_checkpoint.checkpoint_name`
(models/mmdit_blocks.py, nn/mlp.py); the presets below keep some of them and recompute the
rest of the block, from the block input, in the backward pass.
"""

from collections.abc import Callable

import jax

# The names the blocks give their activations.
QUERY, KEY, VALUE = "query_proj", "key_proj", "value_proj"  # per-head q, k (RMS-normalised, before RoPE), v
ATTENTION = "attention_out"  # the joint attention's output, before its output projection
MLP_HIDDEN = "mlp_hidden"  # the MLP's hidden activation (after the nonlinearity): the widest tensor
CHECKPOINT_NAMES = (QUERY, KEY, VALUE, ATTENTION, MLP_HIDDEN)

# preset -> the named activations it keeps. Keeping q/k/v and the attention output spares the
# backward pass the attention's recomputation (its most expensive part at long sequences);
# the MLP hidden activation is 4x the model width, the largest to keep.
SAVED_NAMES: dict[str, tuple[str, ...]] = {
    "save_qkv": (QUERY, KEY, VALUE),
    "save_attention": (ATTENTION,),
    "save_qkv_attention": (QUERY, KEY, VALUE, ATTENTION),
    "save_attention_mlp": (ATTENTION, MLP_HIDDEN),
    "save_all_named": CHECKPOINT_NAMES,
}

# "none": keep every activation (fastest, most memory); "full": keep only the block inputs;
# "dots": keep matmul outputs; "dots_no_batch": keep matmul outputs without batch dimensions
# (the weight-like ones), recomputing attention scores and elementwise work; the SAVED_NAMES
# presets; "save:NAME,NAME" keeps the listed CHECKPOINT_NAMES.
REMAT_POLICIES: dict[str, Callable | None] = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    **{name: jax.checkpoint_policies.save_only_these_names(*names) for name, names in SAVED_NAMES.items()},
}
CUSTOM_PREFIX = "save:"


def remat_policy(name: str) -> Callable:
    """The jax.checkpoint policy of a preset name or of 'save:NAME,NAME'."""
    if name.startswith(CUSTOM_PREFIX):
        names = tuple(n.strip() for n in name[len(CUSTOM_PREFIX):].split(",") if n.strip())
        unknown = [n for n in names if n not in CHECKPOINT_NAMES]
        if unknown or not names:
            raise ValueError(f"remat policy {name!r}: {unknown or 'no names'}; list names among {CHECKPOINT_NAMES}")
        return jax.checkpoint_policies.save_only_these_names(*names)
    if name not in REMAT_POLICIES:
        raise ValueError(f"unknown remat policy {name!r}; choose one of {['none', *REMAT_POLICIES]} "
                         f"or '{CUSTOM_PREFIX}' followed by names among {CHECKPOINT_NAMES}")
    return REMAT_POLICIES[name]


def remat(fn: Callable, policy: str) -> Callable:
    """`fn` under `jax.checkpoint` with the named policy ("none" returns it unchanged)."""
    if policy == "none":
        return fn
    return jax.checkpoint(fn, policy=remat_policy(policy), prevent_cse=False)
