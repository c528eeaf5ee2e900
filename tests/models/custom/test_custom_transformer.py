"""HunyuanCustom DiT parity with the official code's fixture (all paths, float32), the
"timecat-w" reference RoPE, the released identity-only layout, and input errors."""

import jax
import numpy as np
import pytest
from flax import nnx
from helpers import channels_last, fixture_params, load_fixture, report

from configs import load_config
from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.custom_table import custom_rules
from hyv_jax.convert.mapping import torch_to_jax
from hyv_jax.convert.model_state import load_params, param_shapes
from hyv_jax.models.custom.reference_rope import timecat_w_positions
from hyv_jax.models.custom.transformer import CustomTransformerConfig, HunyuanCustomTransformer
from hyv_jax.nn.rope import rope_tables

TINY = CustomTransformerConfig.from_mapping(load_config("configs/tiny_custom.py").transformer)
TOL = 1e-5  # relative to the output's max; independent fp32 implementations land near 2e-6


@pytest.fixture(scope="module")
def fx():
    return load_fixture("hycustom_dit_tiny")


def build(config, fx):
    model = HunyuanCustomTransformer(config, rngs=nnx.Rngs(0))
    params = fixture_params(fx)
    wanted = {r.source for r in custom_rules(config)}
    params = {k: v for k, v in params.items() if k in wanted}  # the released layouts lack some modules
    load_params(model, torch_to_jax(from_arrays(params), custom_rules(config), param_shapes(model), np.float32))
    return model


@pytest.fixture(scope="module")
def model(fx):
    return build(TINY, fx)


def call(model, fx, *, bg=True, audio=True, mask="input.text_mask"):
    """The forward as sampling runs it: jitted over the split (graphdef, state)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, *args, **kwargs):
        return nnx.merge(graphdef, state)(*args, **kwargs)

    return forward(
        state, channels_last(fx["input.x"]), fx["input.t"], fx["input.text_states"], fx[mask], fx["input.text_states_2"],
        ref_latents=channels_last(fx["input.ref_latents"]),
        bg_latents=channels_last(fx["input.bg_latents"]) if bg else None,
        audio_prompts=fx["input.audio_prompts"] if audio else None,
        audio_strength=float(fx["input.audio_strength"]),
    )


@pytest.mark.parametrize("output, paths", [
    ("output", dict()),
    ("output_identity_audio", dict(bg=False)),
    ("output_identity_videocond", dict(audio=False)),
    ("output_llava_mask_layout", dict(mask="input.text_mask_llava_layout")),
])
def test_official_fixture_outputs(model, fx, output, paths):
    _, rel = report(f"hycustom {output}", call(model, fx, **paths), channels_last(fx[output]))
    assert rel < TOL


def test_identity_only_with_released_layout(fx):
    """`hunyuancustom_720P` has neither audio nor video-condition modules."""
    config = CustomTransformerConfig.from_mapping({**TINY.__dict__, "video_condition": False, "audio_condition": False})
    _, rel = report("hycustom output_identity_only", call(build(config, fx), fx, bg=False, audio=False),
                    channels_last(fx["output_identity_only"]))
    assert rel < TOL


def test_official_intermediates(model, fx):
    import jax.numpy as jnp

    from hyv_jax.models.custom.audio_adapter import frame_audio_tokens

    ref = model.img_in(jnp.asarray(channels_last(fx["input.ref_latents"])))
    assert report("img_in(ref_latents)", ref, fx["inter.img_in.call1"])[1] < 1e-6
    bg = model.bg_proj(model.bg_in(jnp.asarray(channels_last(fx["input.bg_latents"]))))
    assert report("bg_proj(bg_in(bg_latents))", bg, fx["inter.bg_proj"])[1] < 1e-6
    audio = model.audio_proj(jnp.asarray(fx["input.audio_prompts"]))
    assert report("audio_proj", audio, fx["inter.audio_proj"])[1] < 1e-5  # 19200-long dot products
    # audio layer 0 on the fixture's double block 1 output (reference tokens first)
    video = jnp.asarray(fx["inter.double_blocks.1.out0"])[:, 15:].reshape(1, 3, 15, -1)
    graphdef, stacked = nnx.split(model.audio_models)
    layer = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], stacked))
    out = layer(frame_audio_tokens(audio, 3), video)
    assert report("audio_models.0", out, fx["inter.audio_models.0"])[1] < 1e-5


def test_timecat_w_rope_equals_official(fx):
    cos, sin = rope_tables(timecat_w_positions((3, 3, 5), 1), (8, 12, 12), 256.0)
    np.testing.assert_allclose(cos, fx["rope.cos"], rtol=0, atol=6e-8)
    np.testing.assert_allclose(sin, fx["rope.sin"], rtol=0, atol=6e-8)


def test_several_references_at_earlier_times():
    pos = timecat_w_positions((2, 2, 3), 2)
    assert pos.shape == (2 * 6 + 2 * 6, 3)
    np.testing.assert_array_equal(pos[:6, 0], -1)
    np.testing.assert_array_equal(pos[6:12, 0], -2)
    np.testing.assert_array_equal(pos[:12, 2], np.tile([3, 4, 5], 4))  # width shifted by W' = 3
    np.testing.assert_array_equal(pos[:12, 1], np.repeat([0, 1, 0, 1], 3))
    np.testing.assert_array_equal(pos[12:, 0], np.repeat([0, 1], 6))


def test_bad_inputs_fail_with_clear_errors(model, fx):
    x, ref = channels_last(fx["input.x"]), channels_last(fx["input.ref_latents"])
    rest = (fx["input.text_states"], fx["input.text_mask"], fx["input.text_states_2"])
    with pytest.raises(ValueError, match="ref_latents must be"):
        model(x, fx["input.t"], *rest, ref_latents=None)
    with pytest.raises(ValueError, match="experimental_multi_reference"):
        model(x, fx["input.t"], *rest, ref_latents=np.concatenate([ref, ref], axis=1))
    with pytest.raises(ValueError, match="bg_latents must be"):
        model(x, fx["input.t"], *rest, ref_latents=ref, bg_latents=x)
    with pytest.raises(ValueError, match="audio_prompts must be"):
        model(x, fx["input.t"], *rest, ref_latents=ref, audio_prompts=fx["input.audio_prompts"][:, :5])
    bare = HunyuanCustomTransformer(CustomTransformerConfig.from_mapping({**TINY.__dict__, "audio_condition": False,
                                                                         "video_condition": False}), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="hunyuancustom_audio_720P"):
        bare(x, fx["input.t"], *rest, ref_latents=ref, audio_prompts=fx["input.audio_prompts"])
    with pytest.raises(ValueError, match="hunyuancustom_editing_720P"):
        bare(x, fx["input.t"], *rest, ref_latents=ref, bg_latents=channels_last(fx["input.bg_latents"]))


def test_experimental_multi_reference_runs(fx):
    """Two references (times -1, -2) behind the flag: the video output keeps its shape and the
    second reference takes part in attention (no reference output exists to compare with)."""
    config = CustomTransformerConfig.from_mapping({**TINY.__dict__, "experimental_multi_reference": True})
    model = build(config, fx)
    ref = channels_last(fx["input.ref_latents"])
    args = (channels_last(fx["input.x"]), fx["input.t"])
    rest = (fx["input.text_states"], fx["input.text_mask"], fx["input.text_states_2"])
    one = np.asarray(model(*args, *rest, ref_latents=ref))
    two = np.asarray(model(*args, *rest, ref_latents=np.concatenate([ref, ref[:, :, ::-1]], axis=1)))
    assert two.shape == one.shape and np.isfinite(two).all()
    assert np.abs(two - one).max() > 1e-3
    _, rel = report("multi-reference flag, one reference = identity-only output", one, channels_last(fx["output_identity_only"]))
    assert rel < TOL
