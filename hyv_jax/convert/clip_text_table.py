"""Name table of CLIP's text model: transformers' `CLIPTextModel` names without the
`text_model.` prefix (the checkpoint reader strips it) <-> our parameters."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.transforms import Copy, Linear, Same
from hyv_jax.models.text.clip_text import CLIPTextConfig

_IN, _OUT = Linear(1), Linear(2)


def _layer(rules, name, path, layer, weight):
    rules.append(Rule(f"{name}.weight", (Slot((*path, "kernel" if weight else "weight"), layer),), weight or Copy()))
    rules.append(Rule(f"{name}.bias", (Slot((*path, "bias"), layer),), Copy()))


def clip_text_rules(config: CLIPTextConfig) -> list[Rule]:
    rules = [Rule(f"embeddings.{e}.weight", (Slot(("embeddings", e, "weight")),), Same())
             for e in ("token_embedding", "position_embedding")]
    for i in range(config.num_layers):
        src = f"encoder.layers.{i}"
        for name, weight in (("self_attn.q_proj", _IN), ("self_attn.k_proj", _IN), ("self_attn.v_proj", _IN),
                             ("self_attn.out_proj", _OUT), ("layer_norm1", None), ("layer_norm2", None),
                             ("mlp.fc1", _IN), ("mlp.fc2", _IN)):
            _layer(rules, f"{src}.{name}", ("layers", *name.split(".")), i, weight)
    _layer(rules, "final_layer_norm", ("final_layer_norm",), None, None)
    return rules
