"""Data: ArrayRecord shards per bucket, the Grain pipeline (buckets never mixed, per-host
shards disjoint and complete, deterministic shuffles, resumable iterator), and preparation
from a folder of videos/images with the tiny VAE and a stand-in text encoder."""

import dataclasses

import av
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import load_config
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.sampling.guidance import DEFAULT_NEGATIVE_PROMPT
from hyv_jax.training.caption_dropout import load_negative_prompt
from hyv_jax.training.data_pipeline import training_batches
from hyv_jax.training.data_preparation import Buckets, fit_clip, folder_items, prepare_dataset
from hyv_jax.training.latent_records import write_records


def _example(i, shape):
    return {"latents": np.full(shape, i, np.float32), "text_states": np.full((6, 32), i, np.float32),
            "text_mask": np.ones(6, np.int32), "text_pooled": np.full(16, i, np.float32)}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    # ids 0..11 in a (2,4,4) bucket, 12..19 in a (1,8,8) bucket, several shards each
    write_records(root, [_example(i, (2, 4, 4, 4) if i < 12 else (1, 8, 8, 4)) for i in range(20)], shard_size=5)
    return root


def _ids(batch):
    return [int(v) for v in batch["latents"].reshape(len(batch["latents"]), -1)[:, 0]]


def test_batches_keep_buckets_apart_and_cover_an_epoch(shards):
    it = training_batches(shards, 4, seed=0)
    seen = []
    for _ in range(5):  # 3 + 2 batches = one epoch of both buckets
        b = next(it)
        ids = _ids(b)
        assert all(i < 12 for i in ids) or all(i >= 12 for i in ids), ids
        assert b["latents"].shape[1:] == ((2, 4, 4, 4) if ids[0] < 12 else (1, 8, 8, 4))
        np.testing.assert_array_equal(b["text_pooled"][:, 0], ids)
        seen += ids
    assert sorted(seen) == list(range(20)), "one epoch shows every clip once"


def test_shuffle_is_deterministic_and_state_resumes(shards):
    a = [_ids(next(training_batches(shards, 4, seed=5))) for _ in range(2)]
    assert a[0] == a[1]
    first = [_ids(b) for b, _ in zip(training_batches(shards, 4, seed=5), range(6))]
    other = [_ids(b) for b, _ in zip(training_batches(shards, 4, seed=6), range(6))]
    assert first != other
    it = training_batches(shards, 4, seed=5)
    for _ in range(3):
        next(it)
    state = it.get_state()
    it2 = training_batches(shards, 4, seed=5)
    it2.set_state(state)
    assert [_ids(next(it2)) for _ in range(3)] == first[3:]


def test_processes_read_their_rows_of_the_same_global_batches(shards):
    """Two processes feeding rows 0-1 and 2-3 of each global batch of 4 read disjoint records
    that together are the one-process batches, step by step and across epochs; processes
    holding the same rows (replicas) read the same records."""
    whole = training_batches(shards, 4, seed=1)
    halves = [training_batches(shards, 4, seed=1, rows=rows) for rows in ([0, 1], [2, 3])]
    replica = training_batches(shards, 4, seed=1, rows=[2, 3])
    seen = []
    for _ in range(12):  # 5 batches per epoch: crosses two epoch boundaries
        full, (a, b) = next(whole), (next(h) for h in halves)
        assert _ids(a) + _ids(b) == _ids(full)
        assert _ids(next(replica)) == _ids(b)
        for name in full:
            np.testing.assert_array_equal(np.concatenate([a[name], b[name]]), full[name])
        seen.append(_ids(full))
    assert sorted(i for ids in seen[:5] for i in ids) == list(range(20))


def test_every_process_feeds_the_same_shapes_with_uneven_buckets(tmp_path):
    """32 three-frame clips and 7 single frames, global batch 4 over two processes: bucket
    choices follow the global counts (8 and 1 batches per epoch), so at every step both
    processes feed the same bucket; the 3 frames left over are dropped by both."""
    write_records(tmp_path, [_example(i, (3, 4, 4, 4) if i < 32 else (1, 4, 4, 4)) for i in range(39)], shard_size=8)
    halves = [training_batches(tmp_path, 4, seed=0, rows=rows) for rows in ([0, 1], [2, 3])]
    shapes = set()
    for _ in range(27):  # three epochs
        a, b = (next(h) for h in halves)
        assert a["latents"].shape == b["latents"].shape
        shapes.add(a["latents"].shape)
    assert shapes == {(2, 3, 4, 4, 4), (2, 1, 4, 4, 4)}


def test_a_damaged_shard_is_named(shards, tmp_path):
    import shutil

    from hyv_jax.training.data_pipeline import DamagedShardError

    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    shard = sorted((copy / "t2_h4_w4").glob("*.array_record"))[1]
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(DamagedShardError, match=f"shard {shard} is damaged .*prepare the dataset again"):
        training_batches(copy, 4)


def test_a_damaged_record_is_named_with_its_shard(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    from hyv_jax.training.data_pipeline import DamagedShardError
    from hyv_jax.training.latent_records import encode_record

    write_records(tmp_path, [_example(i, (1, 4, 4, 4)) for i in range(4)], shard_size=4)
    shard = tmp_path / "t1_h4_w4" / "shard-00000.array_record"
    writer = ArrayRecordWriter(str(shard), "group_size:1")  # the same records, the third cut short
    for i in range(4):
        data = encode_record(_example(i, (1, 4, 4, 4)))
        writer.write(data[:-8] if i == 2 else data)
    writer.close()
    with pytest.raises(DamagedShardError, match=f"shard {shard} is damaged \\(record 2: .*does not match its header"):
        for _ in range(3):
            next(training_batches(tmp_path, 4, seed=0))


@dataclasses.dataclass(frozen=True)
class _Embeddings:
    states: np.ndarray
    mask: np.ndarray
    pooled: np.ndarray


class _StandInEncoder:
    """The TextEncoder contract (encode(prompts, mode) -> states/mask/pooled) from a hash."""

    def __init__(self):
        self.calls = []

    def encode(self, prompts, *, mode="video"):
        self.calls.append((tuple(prompts), mode))
        seeds = [sum(map(ord, p)) for p in prompts]
        states = np.stack([np.random.default_rng(s).normal(size=(6, 32)) for s in seeds]).astype(np.float32)
        return _Embeddings(states, np.ones((len(prompts), 6), np.int32), states[:, 0, :16].copy())


def _write_mp4(path, frames):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())


def test_prepare_folder_with_vae_and_text_encoder(tmp_path):
    src = tmp_path / "media"
    src.mkdir()
    r = np.random.default_rng(0)
    _write_mp4(src / "clip.mp4", r.integers(0, 255, (7, 24, 24, 3), dtype=np.uint8))
    _write_mp4(src / "short.mp4", r.integers(0, 255, (3, 24, 24, 3), dtype=np.uint8))
    image = r.integers(0, 255, (20, 40, 3), dtype=np.uint8)
    Image.fromarray(image).save(src / "wide.png")
    for name, cap in (("clip", "a red circle moving left"), ("short", "too short"), ("wide", "a blue square")):
        (src / f"{name}.txt").write_text(cap)

    vae = CausalVideoVAE(VAEConfig.from_mapping(load_config("configs/tiny.py").vae), rngs=nnx.Rngs(0))
    text = _StandInEncoder()
    buckets = Buckets(resolutions=((16, 16), (16, 32)), frames=(1, 5))
    progress = []
    index = prepare_dataset(folder_items(src), tmp_path / "out", vae=vae, text_encoder=text, buckets=buckets,
                            log=progress.append, report_every_s=0)
    assert progress[0].startswith(f"encoding clips into {tmp_path / 'out'}")  # before the first (slowest) clip
    assert [line.split(",")[0] for line in progress[1:4]] == ["1 clips encoded", "2 clips encoded", "3 clips encoded"]
    assert progress[4].startswith("3 clips encoded into 3 buckets in ")
    assert {k: v["count"] for k, v in index["buckets"].items()} == {"t2_h2_w2": 1, "t1_h2_w2": 1, "t1_h2_w4": 1}  # 3 frames -> 1
    negative = DEFAULT_NEGATIVE_PROMPT.strip()
    assert sorted(text.calls) == sorted([(("a blue square",), "image"), (("a red circle moving left",), "video"),
                                         (("too short",), "image"), ((negative,), "image"), ((negative,), "video")])
    # the sampler's default negative prompt per template, stored beside the shards for caption dropout
    stored, expect = load_negative_prompt(tmp_path / "out"), text.encode([negative])
    for mode in ("video", "image"):
        np.testing.assert_array_equal(stored[mode]["text_states"], expect.states[0])
        np.testing.assert_array_equal(stored[mode]["text_mask"], expect.mask[0])
        np.testing.assert_array_equal(stored[mode]["text_pooled"], expect.pooled[0])

    it = training_batches(tmp_path / "out", 1, seed=0)
    got = [next(it) for _ in range(3)]
    wide = next(b for b in got if b["latents"].shape[1:4] == (1, 2, 4))
    # the image: 20x40 -> 16x32 (aspect 2 bucket), encoded as posterior mean x scaling factor
    clip = fit_clip(image[None], buckets)
    assert clip.shape == (1, 16, 32, 3)
    mean, _ = vae.encode(clip[None].astype(np.float32) / 127.5 - 1.0)
    np.testing.assert_allclose(wide["latents"][0], np.asarray(mean[0]) * vae.config.scaling_factor, rtol=1e-5, atol=1e-6)
    expect = text.encode(["a blue square"])
    np.testing.assert_array_equal(wide["text_states"][0], expect.states[0])
    np.testing.assert_array_equal(wide["text_pooled"][0], expect.pooled[0])


def test_folder_without_captions_is_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="captions missing"):
        list(folder_items(tmp_path))


def test_records_round_trip_and_damage_is_reported():
    from hyv_jax.training.latent_records import decode_record, encode_record

    rng = np.random.default_rng(0)
    example = {"latents": rng.standard_normal((2, 3, 4, 4)), "text_states": rng.standard_normal((5, 8)),
               "text_mask": np.array([1, 1, 0, 0, 0]), "text_pooled": rng.standard_normal(3)}
    back = decode_record(encode_record(example))
    for field, value in example.items():
        np.testing.assert_array_equal(back[field], value.astype(back[field].dtype))
    with pytest.raises(ValueError, match="damaged"):
        decode_record(encode_record(example)[:-4])
