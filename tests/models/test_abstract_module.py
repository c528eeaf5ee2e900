"""nn/params.abstract_module: the abstract model nnx.eval_shape builds, without drawing keys
(each draw under a trace made flax walk the whole trace: loading the VAE took seconds)."""

import jax
from flax import nnx

from configs import load_config
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig
from hyv_jax.nn.params import abstract_module


def _described(module):
    return [(path, type(v).__name__, v.shape, v.dtype, v.get_metadata().get("out_sharding"))
            for path, v in nnx.to_flat_state(nnx.state(module))
            if isinstance(v, nnx.Param)]


def test_abstract_module_is_eval_shape_without_key_draws():
    config = load_config("configs/tiny.py")
    for model, cfg in ((CausalVideoVAE, VAEConfig.from_mapping(config.vae)),
                       (HunyuanVideoTransformer, TransformerConfig.from_mapping(config.transformer))):
        counts = []

        def make(rngs, model=model, cfg=cfg):
            counts.append(rngs.params.count.get_value())
            built = model(cfg, rngs=rngs)
            counts.append(rngs.params.count.get_value())  # a new value for every key drawn
            return built

        ours = abstract_module(make)
        reference = nnx.eval_shape(lambda model=model, cfg=cfg: model(cfg, rngs=nnx.Rngs(0)))
        assert _described(ours) and _described(ours) == _described(reference)
        assert all(isinstance(v.get_value(), jax.ShapeDtypeStruct) for _, v in nnx.to_flat_state(nnx.state(ours, nnx.Param)))
        if model is CausalVideoVAE:  # no stacks (a stack splits its rngs once, outside make_param)
            assert counts[0] is counts[1], "abstract_module drew keys"



def test_loading_traces_each_abstract_model_once_and_returns_copies(monkeypatch):
    """Loading a model traced its abstract form twice (for the shardings, then for the restore
    or the random weights): abstract_instance traces once per (model, config), each call a copy."""
    from hyv_jax.convert.vae_checkpoint import abstract_vae
    from hyv_jax.loading.models import load_vae
    from hyv_jax.nn import params

    config = VAEConfig.from_mapping(load_config("configs/tiny.py").vae)
    traced, eval_shape = [], nnx.eval_shape
    monkeypatch.setattr(nnx, "eval_shape", lambda *a, **k: traced.append(1) or eval_shape(*a, **k))
    params._abstract_split.cache_clear()
    load_vae(config, seed=1)
    assert len(traced) == 1
    first, second = abstract_vae(config), abstract_vae(config)
    assert len(traced) == 1 and first is not second
    assert _described(first) == _described(second) == _described(eval_shape(lambda: CausalVideoVAE(config, rngs=nnx.Rngs(0))))
    leaf = nnx.to_flat_state(nnx.state(first, nnx.Param))[0][1]
    leaf.set_value(jax.ShapeDtypeStruct((1,), leaf.get_value().dtype))  # changing one copy leaves the next alone
    assert _described(abstract_vae(config)) == _described(second)


def test_abstract_module_traces_no_initialiser():
    """An initialiser (a normal draw: ~50 traced operations) was most of an abstract build's
    time; the abstract parameters have the initialiser's shapes and dtypes without it."""
    import jax.numpy as jnp

    from hyv_jax.nn.params import make_param

    calls = []

    def init(key, shape, dtype):
        calls.append(shape)
        return jax.random.normal(key, shape, dtype)

    class Two(nnx.Module):
        def __init__(self, rngs):
            self.a = make_param(rngs, init, (3, 4), ("embed", "mlp"), jnp.bfloat16)
            self.b = make_param(rngs, init, (5,), ("mlp",), jnp.float32)

    built = abstract_module(Two)
    assert calls == []
    assert [(v.shape, v.dtype) for _, v in nnx.to_flat_state(nnx.state(built, nnx.Param))] == [((3, 4), jnp.bfloat16), ((5,), jnp.float32)]
    Two(nnx.Rngs(0))  # a concrete build does initialise
    assert calls == [(3, 4), (5,)]
