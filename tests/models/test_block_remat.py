"""Remat presets keep exactly the activations they name (q/k/v, attention output, MLP hidden,
tagged inside the blocks), change no gradient, and the blocks carry named scopes for profiles."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hyv_jax.models.mmdit_blocks import DoubleStreamBlock, SingleStreamBlock
from hyv_jax.nn.remat import ATTENTION, CHECKPOINT_NAMES, KEY, MLP_HIDDEN, QUERY, SAVED_NAMES, VALUE, remat, remat_policy
from hyv_jax.parallel.plan import single_device_attention

DIM, HEADS, N_IMG, N_TXT = 32, 2, 8, 4


def _inputs():
    r = np.random.default_rng(0)
    n = N_IMG + N_TXT
    rope = (jnp.asarray(np.cos(r.normal(size=(n, DIM // HEADS))), jnp.float32),
            jnp.asarray(np.sin(r.normal(size=(n, DIM // HEADS))), jnp.float32))
    return (jnp.asarray(r.normal(size=(1, n, DIM)), jnp.float32), jnp.asarray(r.normal(size=(1, DIM)), jnp.float32), rope,
            jnp.array([N_IMG + 3]))


def _double_and_single():
    """loss(states, x) through one double and one single block under a policy."""
    kw = dict(dtype=jnp.float32, param_dtype=jnp.float32)
    blocks = (DoubleStreamBlock(DIM, HEADS, 2.0, "gelu_tanh", rngs=nnx.Rngs(0), **kw),
              SingleStreamBlock(DIM, HEADS, 2.0, "gelu_tanh", rngs=nnx.Rngs(1), **kw))
    (gd, sd), (gs, ss) = (nnx.split(b) for b in blocks)
    x, vec, rope, kv = _inputs()
    attend = single_device_attention("xla")
    img_rope = tuple(t[:N_IMG] for t in rope)

    def loss(policy):
        def double(state, x):
            img, txt = nnx.merge(gd, state)(x[:, :N_IMG], x[:, N_IMG:], vec, img_rope, kv, attend)
            return jnp.concatenate([img, txt], axis=1)

        def single(state, x):
            return nnx.merge(gs, state)(x, vec, rope, kv, attend)

        return lambda states, x: jnp.sum(remat(single, policy)(states[1], remat(double, policy)(states[0], x)) ** 2)

    return loss, (sd, ss), x


def _saved_names(fn, *args, capsys) -> list[str]:
    jax.ad_checkpoint.print_saved_residuals(fn, *args)
    return re.findall(r"named '(\w+)'", capsys.readouterr().out)


@pytest.mark.parametrize("preset", sorted(SAVED_NAMES))
def test_a_preset_keeps_exactly_its_named_activations(preset, capsys):
    loss, states, x = _double_and_single()
    saved = _saved_names(loss(preset), states, x, capsys=capsys)
    # q, k, v: image and text in the double block, joint in the single; MLP: two MLPs in the double block
    per_name = {QUERY: 3, KEY: 3, VALUE: 3, ATTENTION: 2, MLP_HIDDEN: 3}
    assert sorted(saved) == sorted(n for n in SAVED_NAMES[preset] for _ in range(per_name[n]))


def test_full_keeps_no_named_activation_and_every_policy_keeps_the_gradient(capsys):
    loss, states, x = _double_and_single()
    assert _saved_names(loss("full"), states, x, capsys=capsys) == []
    reference = jax.jit(jax.grad(loss("none")))(states, x)
    for policy in ["full", "save_qkv_attention", f"save:{QUERY},{MLP_HIDDEN}"]:
        grads = jax.jit(jax.grad(loss(policy)))(states, x)
        worst = max(float(np.abs(a - b).max() / np.abs(b).max())
                    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True))
        print(f"{policy}: gradients within {worst:.1e} of no remat (relative to each gradient's largest entry)")
        assert worst < 1e-5, policy  # recomputation fuses differently: float32 rounding only


def test_unknown_policies_and_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown remat policy 'save_everything'; choose one of \['none', 'full'.*save_qkv"):
        remat_policy("save_everything")
    with pytest.raises(ValueError, match=rf"\['mlp_out'\]; list names among {re.escape(str(CHECKPOINT_NAMES))}"):
        remat_policy(f"save:{QUERY},mlp_out")


def test_blocks_and_stages_have_named_scopes():
    loss, states, x = _double_and_single()
    text = jax.jit(loss("none")).lower(states, x).as_text(debug_info=True)
    for scope in ("double_block/qkv", "double_block/attention", "double_block/mlp",
                  "single_block/qkv", "single_block/attention", "single_block/mlp"):
        assert scope in text, scope
