"""Name table of LLaVA's image side: the CLIP vision tower (`vision_tower.vision_model.*`) and
`multi_modal_projector.*` of a transformers LLaVA checkpoint <-> our LlavaImageEncoder."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.rule_builders import CLIP_LAYER_NAMES, dense, encoder_layer, layer_norm
from hyv_jax.convert.transforms import Copy, Linear, Same
from hyv_jax.models.custom.clip_vision import ClipVisionConfig

TOWER = "vision_tower.vision_model"


def llava_vision_rules(config: ClipVisionConfig) -> list[Rule]:
    rules: list[Rule] = []
    tower = ("vision_tower",)
    # patch conv (O, 3, p, p); our kernel is (p, p, 3, O)
    rules.append(Rule(f"{TOWER}.embeddings.patch_embedding.weight", (Slot((*tower, "patch_embedding", "kernel")),),
                      Linear(3, torch_in_order=(2, 0, 1), conv_shape=True)))
    rules.append(Rule(f"{TOWER}.embeddings.class_embedding", (Slot((*tower, "class_embedding")),), Copy()))
    rules.append(Rule(f"{TOWER}.embeddings.position_embedding.weight", (Slot((*tower, "position_embedding")),), Same()))
    layer_norm(rules, f"{TOWER}.pre_layrnorm", (*tower, "pre_layrnorm"))
    for i in range(config.used_layers):
        encoder_layer(rules, f"{TOWER}.encoder.layers.{i}", (*tower, "layers"), i, CLIP_LAYER_NAMES)
    dense(rules, "multi_modal_projector.linear_1", ("multi_modal_projector", "linear_1"))
    dense(rules, "multi_modal_projector.linear_2", ("multi_modal_projector", "linear_2"))
    return rules


def unused_by_image_encoder(name: str, config: ClipVisionConfig) -> bool:
    """Checkpoint tensors the image side does not read: the language model (the text encoder
    converts it), the tower's layers after `feature_layer`, its post-LayerNorm and buffers."""
    if name.startswith(("language_model.", "lm_head.")) or name.endswith("position_ids"):
        return True
    if name.startswith(f"{TOWER}.post_layernorm."):
        return True
    prefix = f"{TOWER}.encoder.layers."
    return name.startswith(prefix) and int(name[len(prefix):].split(".")[0]) >= config.used_layers
