"""HunyuanCustom's host-side preprocessing against the official data loader's steps run with
OpenCV itself (hymm_sp/data_kits/data_tools.py:78-94 `pad_image`, video_dataset.py:129-151 the
reference image, :194-213 the mask): EXIF orientation, INTER_LINEAR resize then white pad for the
VAE and LLaVA inputs, the loader's CLIP normalisation, masks resized before the BGR2GRAY
conversion of RGB frames, cv2.dilate / cv2.erode for every expand scale, threshold."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hyv_jax.models.custom.mask_video import masked_video, process_mask
from hyv_jax.models.custom.reference_image import clip_reference, load_image, pad_to_size, vae_reference, white_clip_reference

SHAPES = [(100, 50), (50, 200), (333, 517), (900, 1600), (1080, 720), (7, 9)]  # (H, W): shrinking, growing, both aspects


def official_pad_image(image, size, color=(255, 255, 255)):
    """data_tools.py:78-94, resize_ratio 1."""
    crop_h, crop_w = image.shape[:2]
    target_w, target_h = size
    if target_w / crop_w > target_h / crop_h:
        resize_h = int(target_h)
        resize_w = int(crop_w / crop_h * resize_h)
    else:
        resize_w = int(target_w)
        resize_h = int(crop_h / crop_w * resize_w)
    image = cv2.resize(image, (resize_w, resize_h))
    left, top = (target_w - resize_w) // 2, (target_h - resize_h) // 2
    return cv2.copyMakeBorder(image, top, target_h - resize_h - top, left, target_w - resize_w - left,
                              cv2.BORDER_CONSTANT, value=color)


def official_llava_pixels(image):
    """video_dataset.py:120-127,135,148: pad_image to 336, torchvision Resize (336, 336) (a no-op
    at that size), ToTensor, Normalize with the loader's mean and std; channels-last here."""
    x = torch.from_numpy(official_pad_image(image, (336, 336))).permute(2, 0, 1).float().div(255)
    mean = torch.as_tensor((0.48145466, 0.4578275, 0.4082107), dtype=torch.float32)[:, None, None]
    std = torch.as_tensor((0.26862954, 0.26130258, 0.27577711), dtype=torch.float32)[:, None, None]
    return x.sub(mean).div(std).permute(1, 2, 0).numpy()


def _image(shape, seed=0):
    """A smooth image with detail (a plain random one hides interpolation differences less well)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 100 * np.sin(x[..., None] / (3 + np.arange(3)) + y[..., None] / 5.0)
    return (base + rng.normal(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", SHAPES)
def test_vae_and_llava_inputs_equal_the_official_opencv_steps(shape):
    image = _image(shape)
    np.testing.assert_array_equal(pad_to_size(image, 160, 96), official_pad_image(image, (160, 96)))
    expected = (torch.from_numpy(official_pad_image(image, (160, 96))).float() / 255.0) * 2 - 1.0  # sample_batch.py:63
    np.testing.assert_array_equal(vae_reference(image, 160, 96)[0, 0], expected.numpy())
    np.testing.assert_array_equal(clip_reference(image), official_llava_pixels(image))


def test_white_llava_reference():
    np.testing.assert_array_equal(white_clip_reference(), official_llava_pixels(np.full((336, 336, 3), 255, np.uint8)))


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
    with pytest.raises(ValueError, match="less than one pixel"):
        pad_to_size(np.zeros((1000, 1, 3), np.uint8), 160, 64)


def test_exif_orientation_applied_as_cv2_imread(tmp_path):
    stored = _image((40, 64))  # stored landscape, EXIF says: rotate 90 degrees clockwise to display
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    image = load_image(tmp_path / "phone.jpg")
    assert image.shape == (64, 40, 3)
    np.testing.assert_array_equal(image, cv2.cvtColor(cv2.imread(str(tmp_path / "phone.jpg")), cv2.COLOR_BGR2RGB))


def test_unreadable_image_is_reported(tmp_path):
    (tmp_path / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "x.png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "absent.png")
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").shape == (4, 6, 3)


def official_mask(frame, width, height, expand_scale):
    """video_dataset.py:197-205 on one RGB frame (decord reads RGB)."""
    mask = cv2.resize(frame, (width, height))
    if len(mask.shape) == 3 and mask.shape[2] == 3:
        mask = cv2.cvtColor(mask, cv2.COLOR_BGR2GRAY)
    if expand_scale != 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (abs(expand_scale), abs(expand_scale)))
        mask = (cv2.dilate if expand_scale > 0 else cv2.erode)(mask, kernel, iterations=3)
    return cv2.threshold(mask, 127.5, 255, cv2.THRESH_BINARY)[1]


def _mask_frames():
    """Two RGB mask frames at 45 x 70 with soft-edged blobs of several colours."""
    y, x = np.mgrid[0:45, 0:70]
    frames = np.zeros((2, 45, 70, 3), np.uint8)
    for i, (cy, cx, r, colour) in enumerate([(20, 30, 9, (255, 255, 255)), (25, 40, 14, (0, 150, 255))]):
        inside = np.clip((r - np.hypot(y - cy, x - cx)) / 3 + 0.5, 0, 1)
        frames[i] = (inside[..., None] * colour).astype(np.uint8)
    frames[0, 5:9, 60:66] = 200
    return frames


@pytest.mark.parametrize("expand_scale", [-4, -3, 0, 1, 2, 4, 5, 6])
def test_mask_equals_the_official_opencv_steps(expand_scale):
    frames = _mask_frames()
    got = process_mask(frames, 96, 160, expand_scale)
    expected = np.stack([official_mask(f, 160, 96, expand_scale) for f in frames]) == 255
    assert got.shape == (2, 96, 160) and got.dtype == bool
    np.testing.assert_array_equal(got, expected)


def test_mask_grey_uses_the_official_channel_order():
    frame = np.zeros((1, 8, 8, 3), np.uint8)
    frame[0, 2:6, 2:6] = (0, 150, 255)  # RGB grey 117 (kept out); read as BGR 164 (masked), as upstream
    assert process_mask(frame, 8, 8, 0)[0].sum() == 16
    grey = process_mask(frame[..., :1].repeat(3, axis=-1) * 0 + 100, 8, 8, 0)  # 100 everywhere: below the threshold
    assert not grey.any()
    assert process_mask(frame[..., 2], 8, 8, 0)[0].sum() == 16  # single-channel frames are used as they are


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
