"""HunyuanCustom's host-side preprocessing: reference image (VAE padding, LLaVA/CLIP pixels vs
transformers' CLIPImageProcessor) and the editing mask (OpenCV's ellipse kernel, dilation and
erosion by expand_scale, threshold, masked video)."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from hyv_jax.models.custom.mask_video import ellipse_kernel, masked_video, process_mask
from hyv_jax.models.custom.reference_image import clip_reference, load_image, pad_to_size, vae_reference, white_clip_reference


def test_clip_pixels_match_clip_image_processor():
    import transformers

    processor = transformers.CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    square = np.full((300, 300, 3), 255, np.uint8)
    square[50:250] = image  # LLaVA's expand2square with a white background
    ref = processor(Image.fromarray(square), return_tensors="np").pixel_values[0].transpose(1, 2, 0)
    np.testing.assert_allclose(clip_reference(image), ref, rtol=0, atol=1e-6)
    white = processor(Image.fromarray(np.full((336, 336, 3), 255, np.uint8)), return_tensors="np").pixel_values[0]
    np.testing.assert_allclose(white_clip_reference(), white.transpose(1, 2, 0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape, box", [((100, 50, 3), (0, 64, 64, 96)), ((50, 200, 3), (12, 52, 0, 160))])
def test_reference_padded_to_video_aspect_on_white(shape, box):
    image = np.zeros(shape, np.uint8)  # black, so the white padding is easy to see
    out = pad_to_size(image, 160, 64)
    top, bottom, left, right = box
    assert out.shape == (64, 160, 3)
    assert (out[top:bottom, left:right] == 0).all()
    inside = np.zeros((64, 160), bool)
    inside[top:bottom, left:right] = True
    assert (out[~inside] == 255).all()
    video = vae_reference(image, 160, 64)
    assert video.shape == (1, 1, 64, 160, 3) and video.min() == -1.0 and video.max() == 1.0


def test_unreadable_image_is_reported(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "x.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (4, 6, 3)


def test_ellipse_kernel_is_opencvs():
    # cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)) for k = 3, 5
    np.testing.assert_array_equal(ellipse_kernel(3), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(ellipse_kernel(5), [[0, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1],
                                                      [0, 0, 1, 0, 0]])


def test_mask_dilation_erosion_and_threshold():
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    frames[0, 16, 16] = 255
    frames[1, 8:24, 8:24] = 255
    grown = process_mask(frames, 32, 32, expand_scale=3)
    cross = ndimage.generate_binary_structure(2, 1)  # the 3x3 ellipse
    np.testing.assert_array_equal(grown[0], ndimage.binary_dilation(frames[0, ..., 0] > 127, cross, iterations=3))
    shrunk = process_mask(frames, 32, 32, expand_scale=-3)
    np.testing.assert_array_equal(shrunk[1], ndimage.binary_erosion(frames[1, ..., 0] > 127, cross, iterations=3))
    assert shrunk[1].sum() < (frames[1, ..., 0] > 0).sum() < grown[1].sum()
    dim = frames.copy()
    dim[0, 16, 16] = 100  # below the threshold after grayscale
    assert not process_mask(dim, 32, 32, expand_scale=0)[0].any()
    assert process_mask(frames, 16, 16, expand_scale=0).shape == (2, 16, 16)


def test_masked_video_and_mismatch():
    video = np.full((2, 8, 8, 3), 7, np.uint8)
    mask = np.zeros((2, 8, 8), bool)
    mask[:, :4] = True
    out = masked_video(video, mask)
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 7).all()
    with pytest.raises(ValueError, match="same frame count and size"):
        masked_video(video[:1], mask)


def test_reference_latents_are_scaled_posterior_samples():
    import jax
    from flax import nnx

    from configs import load_config
    from hyv_jax.models.custom.reference_latents import reference_latents
    from hyv_jax.models.vae import CausalVideoVAE, VAEConfig, sample_posterior

    vae = CausalVideoVAE(VAEConfig.from_mapping(load_config("configs/tiny.py").vae), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (40, 24, 3), dtype=np.uint8), rng.integers(0, 256, (16, 48, 3), dtype=np.uint8)]
    key = jax.random.key(1024)
    out = np.asarray(reference_latents(vae, images, 32, 16, key))
    assert out.shape == (1, 2, 2, 4, 4)
    mean, logvar = vae.encode(vae_reference(images[1], 32, 16))
    second = sample_posterior(mean, logvar, jax.random.split(key, 2)[1]) * vae.config.scaling_factor
    np.testing.assert_array_equal(out[:, 1:], np.asarray(second))
    np.testing.assert_array_equal(out, np.asarray(reference_latents(vae, images, 32, 16, key)))  # seeded
    assert not np.array_equal(out, np.asarray(reference_latents(vae, images, 32, 16, jax.random.key(7))))
