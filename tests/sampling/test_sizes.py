"""Output sizes and editing frame counts as the official scripts settle them."""

import math

import pytest

from hyv_jax.sampling.sizes import align_to, editing_frames, official_size


def test_sizes_round_up_to_16_and_one_value_is_a_square():
    assert official_size([720, 1280]) == ((720, 1280), None)
    assert official_size([544, 960]) == ((544, 960), None)
    (size, note) = official_size([540, 950])
    assert size == (544, 960) and note == "note: 540x950 rounded up to 544x960 (multiples of 16, as upstream)"
    assert official_size([512]) == ((512, 512), None)
    assert official_size([500])[0] == (512, 512)
    for bad in ([], [1, 2, 3], [0, 16]):
        with pytest.raises(ValueError, match="one positive size"):
            official_size(bad)


def test_editing_size_is_the_vaes_latent_size_aligned_to_16():
    for native in range(1, 1100):
        latent = native
        for _ in range(3):  # the VAE's stride-2 causal convs with padding 1: ceil halving
            latent = (latent + 2 - 3) // 2 + 1
        assert align_to(latent * 8) == align_to(native) == math.ceil(native / 16) * 16


def test_editing_frames_follow_the_latent_count():
    for video in range(1, 140):
        for mask in (video, video + 3, max(video - 2, 1)):
            n, t = min(video, mask), min(video, mask)
            for _ in range(2):  # two temporal stride-2 causal convs (2 frames of front padding)
                t = (t + 2 - 3) // 2 + 1
            assert editing_frames(video, mask) == (t - 1) * 4 + 1 <= n
    assert editing_frames(129, 200) == 129 and editing_frames(130, 133) == 129 and editing_frames(4, 9) == 1
    with pytest.raises(ValueError, match="need a frame each"):
        editing_frames(0, 5)
