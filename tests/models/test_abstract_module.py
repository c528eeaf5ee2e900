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
