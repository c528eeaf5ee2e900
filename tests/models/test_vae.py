"""Causal 3D VAE parity (CPU, float32, random non-zero weights): the official fixture
(untiled and tiled), diffusers' AutoencoderKLHunyuanVideo (untiled and tiled), tiling
invariants, and input errors. Tensors cross the boundary as (B, C, T, H, W) <-> (B, T, H, W, C)."""

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.model_state import params_tree
from hyv_jax.convert.vae_checkpoint import abstract_vae, read_torch_vae
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig, sample_posterior, split_moments
from hyv_jax.models.vae_tiling import UNTILED

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hyvideo_vae_tiny.safetensors"
# the fixture's constructor; tiles of 32 px / 16 frames give upstream's tile_sample_min_size=32,
# tile_sample_min_tsize=16 (and latent tiles 4 / 4), overlap 0.25
TINY = VAEConfig(
    block_out_channels=(8, 16, 16, 16), latent_channels=4, norm_groups=4,
    tile_sample_size=32, tile_sample_frames=16, dtype="float32", param_dtype="float32",
)
# independent fp32 implementations land within ~1e-5 on the decode, ~1e-6 on the posterior
DECODE_ATOL, POSTERIOR_ATOL = 5e-5, 1e-5


def channels_last(x) -> jnp.ndarray:
    return jnp.asarray(np.moveaxis(np.asarray(x), 1, -1))


def assert_close(name: str, got, ref_channels_first, atol: float) -> None:
    ref = np.moveaxis(np.asarray(ref_channels_first), 1, -1)
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    err = float(np.abs(got - ref).max())
    print(f"{name}: max abs {err:.3g}, relative to max |ref| {err / float(np.abs(ref).max()):.3g}")
    assert err <= atol, f"{name}: max abs error {err:.3g} > {atol:.1g}"


def model_from_torch_state(state: dict, config: VAEConfig = TINY) -> CausalVideoVAE:
    # built abstractly and filled: skips the random init, which costs seconds op by op on CPU
    graphdef, params = nnx.split(abstract_vae(config))
    nnx.replace_by_pure_dict(params, params_tree({p: jnp.asarray(v) for p, v in read_torch_vae(from_arrays(state), config).items()}))
    return nnx.merge(graphdef, params)


@pytest.fixture(scope="module")
def fixture_tensors() -> dict:
    return load_file(FIXTURE)


@pytest.fixture(scope="module")
def fixture_model(fixture_tensors) -> CausalVideoVAE:
    return model_from_torch_state({k.removeprefix("param."): v for k, v in fixture_tensors.items() if k.startswith("param.")})


# ---------------------------------------------------------------- official fixture


def test_fixture_untiled(fixture_model, fixture_tensors):
    f = fixture_tensors
    mean, logvar = fixture_model.encode(channels_last(f["input.video"]), plan=UNTILED)
    assert_close("untiled posterior mean", mean, f["output.posterior_mean"], POSTERIOR_ATOL)
    assert_close("untiled posterior logvar", logvar, f["output.posterior_logvar"], POSTERIOR_ATOL)
    decoded = fixture_model.decode(channels_last(f["input.latent"]), plan=UNTILED)
    assert_close("untiled decode", decoded, f["output.decoded"], DECODE_ATOL)


def test_fixture_spatial_tiles(fixture_model, fixture_tensors):
    f = fixture_tensors
    mean, logvar = fixture_model.encode(channels_last(f["input.video"]))
    assert_close("tiled posterior mean", mean, f["output.tiled.posterior_mean"], POSTERIOR_ATOL)
    assert_close("tiled posterior logvar", logvar, f["output.tiled.posterior_logvar"], POSTERIOR_ATOL)
    decoded = fixture_model.decode(channels_last(f["input.latent"]))
    assert_close("tiled decode", decoded, f["output.tiled.decoded"], DECODE_ATOL)


def test_fixture_temporal_tiles(fixture_model, fixture_tensors):
    f = fixture_tensors
    video = channels_last(f["input.video_long"])
    mean, logvar = fixture_model.encode(video)
    assert_close("long tiled posterior mean", mean, f["output.tiled_long.posterior_mean"], POSTERIOR_ATOL)
    assert_close("long tiled posterior logvar", logvar, f["output.tiled_long.posterior_logvar"], POSTERIOR_ATOL)
    mean, logvar = fixture_model.encode(video, plan=UNTILED)
    assert_close("long untiled posterior mean", mean, f["output.untiled_long.posterior_mean"], POSTERIOR_ATOL)
    assert_close("long untiled posterior logvar", logvar, f["output.untiled_long.posterior_logvar"], POSTERIOR_ATOL)
    decoded = fixture_model.decode(channels_last(f["input.latent_long"]))
    assert decoded.shape[1] == 1 + 4 * (f["input.latent_long"].shape[2] - 1)
    assert_close("long tiled decode", decoded, f["output.tiled_long.decoded"], DECODE_ATOL)


# ---------------------------------------------------------------- tiled vs untiled
# On general content tiling changes the result by design (upstream's own tiny-model outputs
# differ by > 1, and the fixture tests above reproduce those tiled outputs). Where the content
# makes tiling exact in theory, tiled and untiled agree to float rounding:
TILING_ATOL = 1e-4


def test_spatial_tiling_is_exact_on_spatially_uniform_video(fixture_model):
    # every activation stays uniform over space (replicate padding, group statistics), so tile
    # borders carry no information
    rng = np.random.default_rng(0)
    video = jnp.broadcast_to(jnp.asarray(rng.uniform(-1, 1, (1, 9, 1, 1, 3)), jnp.float32), (1, 9, 32, 48, 3))
    tiled = fixture_model.encode(video)[0]
    untiled = fixture_model.encode(video, plan=UNTILED)[0]
    err = float(jnp.abs(tiled - untiled).max())
    print(f"spatially uniform video, tiled vs untiled posterior mean: max abs {err:.3g}")
    assert err <= TILING_ATOL


def test_temporal_tiling_is_exact_on_static_latent(fixture_model):
    # a static latent decodes to a static video (causal padding repeats the first frame, the
    # frame-causal softmax over duplicated keys is unchanged), whatever the temporal window
    rng = np.random.default_rng(1)
    latent = jnp.broadcast_to(jnp.asarray(rng.standard_normal((1, 1, 2, 6, 4)), jnp.float32), (1, 7, 2, 6, 4))
    tiled = fixture_model.decode(latent, plan=TINY.decode_plan(spatial=False))
    untiled = fixture_model.decode(latent, plan=UNTILED)
    err = float(jnp.abs(tiled - untiled).max())
    print(f"static latent, temporally tiled vs untiled decode: max abs {err:.3g}")
    assert tiled.shape == untiled.shape == (1, 25, 16, 48, 3)
    assert err <= TILING_ATOL


def test_small_inputs_are_not_tiled(fixture_model):
    latent = jnp.asarray(np.random.default_rng(2).standard_normal((1, 3, 4, 4, 4)), jnp.float32)
    np.testing.assert_array_equal(np.asarray(fixture_model.decode(latent)), np.asarray(fixture_model.decode(latent, plan=UNTILED)))


# ---------------------------------------------------------------- diffusers


@pytest.fixture(scope="module")
def diffusers_pair():
    """diffusers' VAE at the tiny size, every parameter random and non-zero, and ours with its
    weights converted from its state dict."""
    import torch
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(0)
    ref = AutoencoderKLHunyuanVideo(
        latent_channels=TINY.latent_channels, block_out_channels=TINY.block_out_channels,
        layers_per_block=TINY.layers_per_block, norm_num_groups=TINY.norm_groups,
    ).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(np.prod(p.shape[1:])))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
    state = {k: v.numpy().copy() for k, v in ref.state_dict().items()}
    return torch, ref, model_from_torch_state(state)


def test_diffusers_untiled_odd_frames_non_square(diffusers_pair):
    torch, ref, ours = diffusers_pair
    rng = np.random.default_rng(4)
    video = rng.uniform(-1, 1, (1, 3, 13, 24, 40)).astype(np.float32)
    latent = rng.standard_normal((1, 4, 4, 3, 5)).astype(np.float32)
    ref.disable_tiling()
    with torch.no_grad():
        dist = ref.encode(torch.from_numpy(video)).latent_dist
        decoded = ref.decode(torch.from_numpy(latent)).sample
    mean, logvar = ours.encode(channels_last(video), plan=UNTILED)
    assert_close("diffusers posterior mean", mean, dist.mean.numpy(), POSTERIOR_ATOL)
    assert_close("diffusers posterior logvar", logvar, dist.logvar.numpy(), POSTERIOR_ATOL)
    ours_decoded = ours.decode(channels_last(latent), plan=UNTILED)
    assert ours_decoded.shape[1] == 13
    assert_close("diffusers decode", ours_decoded, decoded.numpy(), DECODE_ATOL)


def test_diffusers_tiled(diffusers_pair):
    torch, ref, ours = diffusers_pair
    rng = np.random.default_rng(5)
    video = rng.uniform(-1, 1, (1, 3, 25, 16, 48)).astype(np.float32)
    latent = rng.standard_normal((1, 4, 7, 2, 6)).astype(np.float32)
    # diffusers' sizes for the same tiles as TINY (its stride is ours, its blend min - stride)
    ref.enable_tiling(
        tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_min_num_frames=16,
        tile_sample_stride_height=24, tile_sample_stride_width=24, tile_sample_stride_num_frames=12,
    )
    with torch.no_grad():
        dist = ref.encode(torch.from_numpy(video)).latent_dist
        decoded = ref.decode(torch.from_numpy(latent)).sample
    mean, logvar = ours.encode(channels_last(video))
    assert_close("diffusers tiled posterior mean", mean, dist.mean.numpy(), POSTERIOR_ATOL)
    assert_close("diffusers tiled posterior logvar", logvar, dist.logvar.numpy(), POSTERIOR_ATOL)
    assert_close("diffusers tiled decode", ours.decode(channels_last(latent)), decoded.numpy(), DECODE_ATOL)


# ---------------------------------------------------------------- posterior and errors


def test_posterior_moments_and_sample():
    import jax

    moments = jnp.concatenate([jnp.arange(4.0) * jnp.ones((1, 2, 3, 3, 4)), jnp.asarray([-40.0, 0.0, 1.0, 40.0]) * jnp.ones((1, 2, 3, 3, 4))], -1)
    mean, logvar = split_moments(moments)
    np.testing.assert_array_equal(np.asarray(mean[0, 0, 0, 0]), [0, 1, 2, 3])
    np.testing.assert_array_equal(np.asarray(logvar[0, 0, 0, 0]), [-30, 0, 1, 20])  # clipped as upstream
    mean, logvar = jnp.zeros((1, 2, 3, 3, 4)), jnp.full((1, 2, 3, 3, 4), 2 * np.log(0.5))
    sample = sample_posterior(mean, logvar, jax.random.key(0))
    noise = jax.random.normal(jax.random.key(0), mean.shape)
    np.testing.assert_allclose(np.asarray(sample), 0.5 * np.asarray(noise), rtol=1e-6)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((1, 8, 32, 32, 3), "1 \\+ 4k frames"),
        ((1, 9, 30, 32, 3), "multiples of 8"),
        ((1, 9, 32, 36, 3), "multiples of 8"),
        ((1, 9, 32, 32, 4), "\\(B, T, H, W, 3\\)"),
        ((9, 32, 32, 3), "\\(B, T, H, W, 3\\)"),
    ],
)
def test_bad_video(shape, message):
    model = abstract_vae(TINY)
    with pytest.raises(ValueError, match=message):
        model.encode(jnp.zeros(shape))


def test_bad_latent():
    model = abstract_vae(TINY)
    with pytest.raises(ValueError, match="\\(B, T, h, w, 4\\)"):
        model.decode(jnp.zeros((1, 3, 4, 4, 16)))


def test_bad_config():
    with pytest.raises(ValueError, match="unknown VAE config keys"):
        VAEConfig.from_mapping({"latent_chanels": 16})
    with pytest.raises(ValueError, match="norm_groups"):
        VAEConfig(block_out_channels=(8, 16, 18, 16), norm_groups=4)
