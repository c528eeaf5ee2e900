"""Videos or images with captions -> cached-latent shards (latent_records.py).

Sources: a folder where every media file `x.mp4` / `x.png` ... has its caption in `x.txt`, or
a TensorFlow Datasets source (`tfds.data_source`) with a video/image field and a caption field.
Each clip is fitted to the bucket with the nearest aspect ratio (resized to cover it, then
centre-cropped) and trimmed to the longest allowed 1+4k frame count it has; the VAE encodes it
(posterior mean x scaling factor) and a TextEncoder-compatible object encodes its caption
(`encode(prompts, mode=...) -> PromptEmbeddings(states, mask, pooled)`).
"""

import dataclasses
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from PIL import Image

from hyv_jax.io.video import read_video
from hyv_jax.training.caption_dropout import save_negative_prompt
from hyv_jax.training.latent_records import ShardWriter

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".gif")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class Buckets:
    """Allowed (height, width) resolutions and frame counts (each 1 + 4k)."""

    resolutions: tuple[tuple[int, int], ...] = ((544, 960), (960, 544), (720, 720))
    frames: tuple[int, ...] = (1, 33, 65, 129)

    def __post_init__(self):
        bad = [f for f in self.frames if (f - 1) % 4]
        if bad:
            raise ValueError(f"bucket frame counts must be 1 + 4k, got {bad}")

    def resolution_for(self, height: int, width: int) -> tuple[int, int]:
        ratio = np.log(width / height)
        return min(self.resolutions, key=lambda hw: abs(np.log(hw[1] / hw[0]) - ratio))

    def frames_for(self, n: int) -> int | None:
        fits = [f for f in self.frames if f <= n]
        return max(fits) if fits else None


def fit_clip(frames: np.ndarray, buckets: Buckets) -> np.ndarray | None:
    """(T, H, W, 3) uint8 -> the clip cropped/resized/trimmed to its bucket (None if too short)."""
    n = buckets.frames_for(frames.shape[0])
    if n is None:
        return None
    th, tw = buckets.resolution_for(*frames.shape[1:3])
    h, w = frames.shape[1:3]
    scale = max(th / h, tw / w)
    rh, rw = max(th, round(h * scale)), max(tw, round(w * scale))
    top, left = (rh - th) // 2, (rw - tw) // 2
    out = [np.asarray(Image.fromarray(f).resize((rw, rh), Image.BICUBIC))[top:top + th, left:left + tw] for f in frames[:n]]
    return np.stack(out)


def read_image(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))[None]


def folder_items(folder: str | Path) -> Iterator[tuple[np.ndarray, str, str]]:
    """(frames, caption, name) for each media file of a folder that has a caption file."""
    folder = Path(folder)
    media = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
    if not media:
        raise FileNotFoundError(f"{folder} has no videos ({VIDEO_SUFFIXES}) or images ({IMAGE_SUFFIXES})")
    missing = [p.name for p in media if not p.with_suffix(".txt").exists()]
    if missing:
        raise FileNotFoundError(f"captions missing for {missing[:5]}: put each caption in a .txt next to its file (x.mp4 -> x.txt)")
    for p in media:
        frames = read_video(p) if p.suffix.lower() in VIDEO_SUFFIXES else read_image(p)
        yield frames, p.with_suffix(".txt").read_text().strip(), p.name


def tfds_items(name: str, split: str, media_key: str, caption_key: str, data_dir: str | None = None) -> Iterator[tuple[np.ndarray, str, str]]:
    import tensorflow_datasets as tfds

    source = tfds.data_source(name, split=split, data_dir=data_dir)
    for i in range(len(source)):
        ex = source[i]
        if media_key not in ex or caption_key not in ex:
            raise KeyError(f"tfds {name} examples have keys {sorted(ex)}; pick the media and caption keys among them")
        frames = np.asarray(ex[media_key], np.uint8)
        caption = ex[caption_key]
        yield (frames if frames.ndim == 4 else frames[None]), (caption.decode() if isinstance(caption, bytes) else str(caption)), f"{name}[{i}]"


def encode_clip(vae, frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) -> scaled latents (T', H/8, W/8, C) (posterior mean x scaling factor)."""
    video = jnp.asarray(frames[None], jnp.float32) / 127.5 - 1.0
    mean, _ = vae.encode(video.astype(jnp.dtype(vae.config.dtype)))
    return np.asarray(mean[0], np.float32) * vae.config.scaling_factor


def prepare_dataset(items: Iterator[tuple[np.ndarray, str, str]], out_dir: str | Path, *, vae, text_encoder,
                    buckets: Buckets, shard_size: int = 1024, log=print, report_every_s: float = 30.0) -> dict:
    """Encodes every (frames, caption, name) item into shards under out_dir; returns the index.
    `log` hears of the progress every `report_every_s` seconds and at the end."""
    writer = ShardWriter(out_dir, shard_size)
    skipped: list[str] = []
    start = last_report = time.monotonic()
    log(f"encoding clips into {out_dir} (each new clip shape compiles the VAE encoder first)")
    for frames, caption, name in items:
        clip = fit_clip(frames, buckets)
        if clip is None:
            skipped.append(name)
            continue
        text = text_encoder.encode([caption], mode="image" if clip.shape[0] == 1 else "video")
        writer.write({"latents": encode_clip(vae, clip), "text_states": text.states[0], "text_mask": text.mask[0],
                      "text_pooled": text.pooled[0]})
        if time.monotonic() - last_report >= report_every_s:
            last_report = time.monotonic()
            log(f"{sum(b['count'] for b in writer.buckets.values())} clips encoded, {len(skipped)} skipped, "
                f"{last_report - start:.0f} s")
    index = writer.close()
    save_negative_prompt(text_encoder, out_dir)  # for caption dropout (training.caption_dropout)
    count = sum(b["count"] for b in index["buckets"].values())
    log(f"{count} clips encoded into {len(index['buckets'])} buckets in {time.monotonic() - start:.0f} s")
    if skipped:
        log(f"skipped {len(skipped)} clips shorter than the smallest frame bucket {min(buckets.frames)}: {skipped[:5]}")
    return index


def parse_resolutions(spec: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """["544x960", "720x720"] -> ((544, 960), (720, 720))."""
    out = []
    for s in spec:
        h, sep, w = s.partition("x")
        if not sep or not h.isdigit() or not w.isdigit():
            raise ValueError(f"resolution {s!r} must look like HEIGHTxWIDTH, e.g. 544x960")
        out.append((int(h), int(w)))
    return tuple(out)
