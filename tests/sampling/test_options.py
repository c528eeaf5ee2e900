"""Sampling options refuse what would sample garbage (non-finite floats, seeds outside 64 bits),
and every 64-bit seed draws its own noise."""

import math

import jax
import numpy as np
import pytest

from hyv_jax.sampling.noise import MAX_SEED, initial_noise, seed_key
from hyv_jax.sampling.options import SamplingOptions, require_finite

SHAPE = (2, 4, 4, 3)


@pytest.mark.parametrize("name, flag", [("flow_shift", "--flow-shift"), ("embedded_guidance", "--embedded-cfg-scale"),
                                        ("cfg_scale", "--cfg-scale"), ("first_block_cache", "--first-block-cache")])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_options_are_refused(name, flag, value):
    with pytest.raises(ValueError, match=rf"{name} \({flag}\) must be a finite number, got {value}"):
        SamplingOptions(**{name: value})


def test_require_finite():
    assert require_finite("audio strength", "0.5") == 0.5
    with pytest.raises(ValueError, match="audio strength must be a finite number, got nan"):
        require_finite("audio strength", float("nan"))
    with pytest.raises(ValueError, match="must be a number, got 'x'"):
        require_finite("audio strength", "x")


def test_seeds_take_the_whole_64_bit_range():
    SamplingOptions(seed=MAX_SEED)
    SamplingOptions(seed=MAX_SEED - 1, num_videos=2)
    for seed, videos in ((-1, 1), (MAX_SEED + 1, 1), (MAX_SEED, 2)):
        with pytest.raises(ValueError, match=f"must lie in 0..{MAX_SEED}"):
            SamplingOptions(seed=seed, num_videos=videos)
    with pytest.raises(ValueError, match="64 bits"):
        seed_key(2**64)


def test_seeds_below_2_to_the_32_draw_as_before_and_larger_ones_draw_their_own_noise():
    for seed in (0, 7, 2**31, 2**32 - 1):
        np.testing.assert_array_equal(initial_noise([seed], SHAPE, "float32")[0],
                                      jax.random.normal(jax.random.key(seed), SHAPE, np.float32))
    seeds = [0, 1, 2**32, 2**32 + 1, 2**63, MAX_SEED]  # before: 2**32 drew seed 0's noise, 2**63 raised OverflowError
    noise = np.asarray(initial_noise(seeds, SHAPE))
    assert len({a.tobytes() for a in noise}) == len(seeds)
    keys = {tuple(np.asarray(jax.random.key_data(seed_key(s)))) for s in [*seeds, 2**32 * 5 + 3, 2**32 * 3 + 5]}
    assert len(keys) == len(seeds) + 2


@pytest.mark.parametrize("kw, message", [
    (dict(height=40, width=64), "video height 40 must be a positive multiple of 16 \\(try 32 or 48\\)"),
    (dict(height=64, width=8), "video width 8 must be a positive multiple of 16 \\(e.g. 16\\)"),
    (dict(height=64, width=100), "try 96 or 112"),
])
def test_size_errors_suggest_the_nearest_sizes_not_the_13b_ones(kw, message):
    with pytest.raises(ValueError, match=message) as info:
        SamplingOptions(**kw)
    assert "544x960" not in str(info.value)


def test_absurd_sizes_are_refused_before_anything_is_allocated():
    with pytest.raises(ValueError, match="100000x100000x1 frames is 39,062,500 latent tokens per video, more than 1,048,576"):
        SamplingOptions(height=100000, width=100000, frames=1)
    SamplingOptions(height=1088, width=1920, frames=129)  # 1080p at the full length is fine (276,480 tokens)
