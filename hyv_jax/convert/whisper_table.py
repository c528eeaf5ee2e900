"""Name table of the Whisper encoder: transformers' `WhisperModel` / `WhisperForConditionalGeneration`
encoder keys (`encoder.*`, optionally under `model.`) <-> our parameters."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.rule_builders import WHISPER_LAYER_NAMES, dense, encoder_layer, layer_norm
from hyv_jax.convert.transforms import Linear, Same
from hyv_jax.models.custom.whisper_encoder import WhisperEncoderConfig

ENCODER_PREFIX = "encoder."
# Conv1d weight (O, C, k); our kernel is (k, C, O)
_CONV = Linear(2, torch_in_order=(1, 0), conv_shape=True)


def whisper_encoder_rules(config: WhisperEncoderConfig) -> list[Rule]:
    """Encoder names without the `encoder.` prefix -> our parameter slots."""
    rules: list[Rule] = []
    dense(rules, "conv1", ("conv1", "proj"), weight=_CONV)
    dense(rules, "conv2", ("conv2", "proj"), weight=_CONV)
    rules.append(Rule("embed_positions.weight", (Slot(("embed_positions",)),), Same()))
    for i in range(config.layers):
        encoder_layer(rules, f"layers.{i}", ("layers",), i, WHISPER_LAYER_NAMES, k_bias=False)
    layer_norm(rules, "layer_norm", ("layer_norm",))
    return rules
