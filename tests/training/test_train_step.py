"""The training step: it learns, it resumes bit-exactly from a checkpoint, it can be profiled,
and on 8 simulated devices (data x fsdp x context, ring attention over the context axis) it
computes what one device does."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh

from configs import load_config
from hyv_jax.loading.models import load_text_encoder
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.parallel.plan import ParallelPlan
from hyv_jax.sampling.options import SamplingOptions
from hyv_jax.sampling.pipeline import TextToVideoPipeline
from hyv_jax.training.caption_dropout import drop_captions, load_negative_prompt, save_negative_prompt
from hyv_jax.training.checkpointing import TrainCheckpoints
from hyv_jax.training.data_pipeline import training_batches
from hyv_jax.training.latent_records import write_records
from hyv_jax.training.loop import resume, train
from hyv_jax.training.profiling import StepProfiler
from hyv_jax.training.trainer import Trainer

OVERRIDES = ["training.optimizer.warmup_steps=1", "training.optimizer.lr=0.003", "training.ema_decay=0.5"]


def _config(batch):
    return load_config("configs/tiny.py", [*OVERRIDES, f"training.batch_size={batch}"])


def _examples(n, seed=0):
    r = np.random.default_rng(seed)
    for i in range(n):
        yield {"latents": r.normal(size=(4, 8, 8, 4)).astype(np.float32), "text_states": r.normal(size=(6, 32)).astype(np.float32),
               "text_mask": (np.arange(6) < 3 + i % 3).astype(np.int32), "text_pooled": r.normal(size=16).astype(np.float32)}


def _trainer(config, plan):
    model = HunyuanVideoTransformer(TransformerConfig.from_mapping(config.transformer), rngs=nnx.Rngs(0))
    negative = _negative_prompt() if config.training.caption_dropout > 0 else None
    return Trainer(model, config.training, plan, negative_prompt=negative)


def _one_device():
    return ParallelPlan(Mesh(np.array(jax.devices()[:1]), ("data",)))


def _params(trainer):
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(jax.device_get(trainer.state))}


@pytest.fixture(scope="module")
def single():
    """One compiled step on a one-device mesh (batch 2, 4x8x8 latents)."""
    return _trainer(_config(2), _one_device())


def test_steps_lower_the_loss_on_a_fixed_batch(single):
    batch = next(iter(_stack_all(2)))
    fixed = jax.random.key(7)  # the same t and noise before and after
    loss = jax.jit(single.loss)
    before = float(loss(single.state["params"], single.frozen, single.put_batch(batch), fixed))
    for _ in range(8):
        single.step(batch)
    after = float(loss(single.state["params"], single.frozen, single.put_batch(batch), fixed))
    print(f"loss on a fixed batch: {before:.4f} -> {after:.4f}")
    assert after < 0.8 * before


def _stack_all(batch):
    ex = list(_examples(batch))
    return [{k: np.stack([e[k] for e in ex]) for k in ex[0]}]


def test_interrupt_and_resume_is_bit_identical(single, tmp_path):
    write_records(tmp_path / "data", _examples(6), shard_size=4)
    initial = dict(jax.device_get(single.state), step=np.zeros((), np.int32))  # the fixture may have stepped

    def fresh_run():
        single.state = jax.device_put(initial, single.state_shardings)
        return training_batches(tmp_path / "data", 2, seed=3)

    batches = fresh_run()
    train(single, batches, steps=5)
    uninterrupted = _params(single)

    batches = fresh_run()
    ckpt = TrainCheckpoints(tmp_path / "ckpt", keep=2)
    train(single, batches, steps=3, checkpoints=ckpt, checkpoint_every=1)  # crosses an epoch boundary next
    ckpt.close()
    # "restart": garbage state and a new iterator, then everything comes from disk
    single.state = jax.tree.map(lambda x: x * 0 + 1 if x.dtype != np.uint32 else x, single.state)
    batches = training_batches(tmp_path / "data", 2, seed=3)
    ckpt = TrainCheckpoints(tmp_path / "ckpt", keep=2)
    assert ckpt.steps() == [2, 3]
    resume(single, ckpt, batches)
    assert single.step_count == 3
    train(single, batches, steps=5)
    resumed = _params(single)
    assert resumed.keys() == uninterrupted.keys()
    for k in uninterrupted:
        np.testing.assert_array_equal(resumed[k], uninterrupted[k], err_msg=k)


def test_eight_device_step_equals_single_device(single):
    assert jax.device_count() >= 8
    config = _config(4)
    config.training.caption_dropout = 0.5  # rows of the sharded batch dropped as on one device
    # The tokens (64 image + 6 text) split over context 2, keys and values passed round the ring.
    plan = ParallelPlan.from_config({"mesh": {"data": 2, "fsdp": 2, "context": 2}, "context_strategy": "ring"})
    sharded = _trainer(config, plan)
    one = _trainer(config, _one_device())
    qkv = sharded.state["params"]["double_blocks"]["img_attn_qkv"]["kernel"][...]
    assert qkv.sharding.spec[1] == "fsdp", qkv.sharding  # (layers, embed, 3, heads, head_dim)
    mu = sharded.state["opt_state"][1][0].mu["double_blocks"]["img_attn_qkv"]["kernel"][...]
    assert mu.sharding.is_equivalent_to(qkv.sharding, qkv.ndim)  # Adam moments follow the params
    batch = _stack_all(4)[0]
    for _ in range(2):
        m8, m1 = sharded.step(batch), one.step(batch)
        print(f"loss 8 devices {m8.loss:.7f}, 1 device {m1.loss:.7f}; grad norm {m8.grad_norm:.6f} vs {m1.grad_norm:.6f}")
        np.testing.assert_allclose(m8.loss, m1.loss, rtol=1e-5)
        np.testing.assert_allclose(m8.grad_norm, m1.grad_norm, rtol=1e-4)
    # The loss runs the model under the plan: ring attention passes K/V round the context axis.
    jaxpr = jax.make_jaxpr(sharded.loss)(sharded.state["params"], sharded.frozen, sharded.put_batch(batch), jax.random.key(0),
                                         sharded.negative_prompt)
    assert "ppermute" in str(jaxpr)
    # Adam divides by sqrt(v): for near-zero gradients it magnifies summation-order rounding up
    # to a step of size ~lr, so parameters compare against the learning rate, and gradients
    # (through the first moments) against their own scale.
    a, b = _params(sharded), _params(one)
    lr = config.training.optimizer.lr
    params = [k for k in a if k.startswith("['params']")]
    worst_param = max(float(np.abs(a[k] - b[k]).max()) for k in params) / lr
    mus = [k for k in a if ".mu[" in k]
    worst_mu = max(float(np.abs(a[k] - b[k]).max() / (np.abs(b[k]).max() + 1e-30)) for k in mus)
    print(f"after 2 steps, 8 vs 1 device: max |param diff| = {worst_param:.2e} x lr; first moments max rel error {worst_mu:.2e}")
    assert worst_mu < 1e-4 and worst_param < 0.05


def test_profile_steps_write_one_trace_of_those_steps(single, tmp_path):
    write_records(tmp_path / "data", _examples(4), shard_size=4)
    start = single.step_count
    profiler = StepProfiler.parse(f"{start + 2}:{start + 3}", tmp_path / "profile")
    train(single, training_batches(tmp_path / "data", 2), steps=start + 4, profiler=profiler)
    assert not profiler.active
    traces = list((tmp_path / "profile" / "process_0").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    with pytest.raises(ValueError, match="expected N:M"):
        StepProfiler.parse("3-5", tmp_path)


def _negative_prompt():
    r = np.random.default_rng(5)
    return {mode: {"text_states": r.normal(size=(6, 32)).astype(np.float32), "text_mask": (np.arange(6) < 2).astype(np.int32),
                   "text_pooled": r.normal(size=16).astype(np.float32)} for mode in ("video", "image")}


def test_caption_dropout_trains_on_the_negative_prompt():
    """With every caption dropped the loss is that of the batch whose text is the negative prompt's,
    with the same times and noise (dropout draws from a key of its own); without the negative
    prompt's encodings, or with a rate of 1, the trainer refuses to start."""
    plain = _trainer(_config(2), _one_device())
    config = _config(2)
    config.training.caption_dropout = 1 - 1e-7  # every row of a 2-row batch (the chance of keeping one: 2e-7)
    negative = _negative_prompt()
    model = HunyuanVideoTransformer(TransformerConfig.from_mapping(config.transformer), rngs=nnx.Rngs(0))
    dropping = Trainer(model, config.training, _one_device(), negative_prompt=negative)
    batch, key = _stack_all(2)[0], jax.random.key(3)
    params, frozen = dropping.state["params"], dropping.frozen
    got = float(jax.jit(dropping.loss)(params, frozen, dropping.put_batch(batch), key, dropping.negative_prompt))
    replaced = dict(batch, **{k: np.stack([v, v]) for k, v in negative["video"].items()})
    want = float(jax.jit(plain.loss)(params, frozen, plain.put_batch(replaced), key))
    captioned = float(jax.jit(plain.loss)(params, frozen, plain.put_batch(batch), key))
    print(f"loss with captions {captioned:.6f}, all dropped {got:.6f}, on the negative prompt {want:.6f}")
    assert got == want and got != captioned
    with pytest.raises(ValueError, match="needs the negative prompt"):
        Trainer(model, config.training, _one_device())
    config.training.caption_dropout = 1.0
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        Trainer(model, config.training, _one_device(), negative_prompt=negative)


def test_drop_captions_replaces_whole_rows():
    rows = 64
    r = np.random.default_rng(0)
    batch = {"latents": np.zeros((rows, 1, 2, 2, 4), np.float32), "text_states": r.normal(size=(rows, 6, 32)).astype(np.float32),
             "text_mask": np.ones((rows, 6), np.int32), "text_pooled": r.normal(size=(rows, 16)).astype(np.float32)}
    negative = _negative_prompt()["image"]
    out = jax.device_get(drop_captions(batch, negative, jax.random.key(1), 0.5))
    dropped = np.array([np.array_equal(out["text_states"][i], negative["text_states"]) for i in range(rows)])
    assert 16 < dropped.sum() < 48
    for field in ("text_states", "text_mask", "text_pooled"):
        np.testing.assert_array_equal(out[field][dropped], np.broadcast_to(negative[field], out[field][dropped].shape))
        np.testing.assert_array_equal(out[field][~dropped], batch[field][~dropped])
    np.testing.assert_array_equal(out["latents"], batch["latents"])


def test_missing_negative_prompt_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare the data again"):
        load_negative_prompt(tmp_path)


def test_the_stored_negative_prompt_is_the_samplers_unconditional_branch(tmp_path):
    """What caption dropout trains on is what true CFG's unconditional branch feeds the model
    when no negative prompt is given (an empty one included: the sampler puts the default in)."""
    config = load_config("configs/tiny.py")
    text = load_text_encoder(config.text_encoder, seed=2)
    stored = load_negative_prompt(save_negative_prompt(text, tmp_path).parent)["video"]

    class Encoding:  # the pipeline's encode_prompt needs only these
        text_encoder, release_text_encoder = text, False

    options = SamplingOptions(height=16, width=16, frames=5, cfg_scale=2.0, negative_prompt="")
    both = TextToVideoPipeline.encode_prompt(Encoding(), "a red circle moving left", options)
    np.testing.assert_allclose(np.asarray(both.states[0]), stored["text_states"], rtol=1e-5, atol=1e-5)  # batch of 2 vs 1
    np.testing.assert_array_equal(np.asarray(both.mask[0]), stored["text_mask"])
    np.testing.assert_allclose(np.asarray(both.pooled[0]), stored["text_pooled"], rtol=1e-5, atol=1e-6)
