"""Name table of CLIP's text model: transformers' `CLIPTextModel` names without the
`text_model.` prefix (the checkpoint reader strips it) <-> our parameters."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.rule_builders import CLIP_LAYER_NAMES, encoder_layer, layer_norm
from hyv_jax.convert.transforms import Same
from hyv_jax.models.text.clip_text import CLIPTextConfig


def clip_text_rules(config: CLIPTextConfig) -> list[Rule]:
    rules = [Rule(f"embeddings.{e}.weight", (Slot(("embeddings", e, "weight")),), Same())
             for e in ("token_embedding", "position_embedding")]
    for i in range(config.num_layers):
        encoder_layer(rules, f"encoder.layers.{i}", ("layers",), i, CLIP_LAYER_NAMES)
    layer_norm(rules, "final_layer_norm", ("final_layer_norm",))
    return rules
