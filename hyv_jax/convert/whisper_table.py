"""Name table of the Whisper encoder: transformers' `WhisperModel` / `WhisperForConditionalGeneration`
encoder keys (`encoder.*`, optionally under `model.`) <-> our parameters."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.transformer_table import _dense, _layer_norm
from hyv_jax.convert.transforms import Linear, Same
from hyv_jax.models.custom.whisper_encoder import WhisperEncoderConfig

ENCODER_PREFIX = "encoder."
# Conv1d weight (O, C, k); our kernel is (k, C, O)
_CONV = Linear(2, torch_in_order=(1, 0), conv_shape=True)


def whisper_encoder_rules(config: WhisperEncoderConfig) -> list[Rule]:
    """Encoder names without the `encoder.` prefix -> our parameter slots."""
    rules: list[Rule] = []
    _dense(rules, "conv1", ("conv1", "proj"), weight=_CONV)
    _dense(rules, "conv2", ("conv2", "proj"), weight=_CONV)
    rules.append(Rule("embed_positions.weight", (Slot(("embed_positions",)),), Same()))
    for i in range(config.layers):
        src, dst = f"layers.{i}", ("layers",)
        _layer_norm(rules, f"{src}.self_attn_layer_norm", (*dst, "norm1"), i)
        _layer_norm(rules, f"{src}.final_layer_norm", (*dst, "norm2"), i)
        for proj in ("q_proj", "v_proj"):
            _dense(rules, f"{src}.self_attn.{proj}", (*dst, proj), i)
        rules.append(Rule(f"{src}.self_attn.k_proj.weight", (Slot((*dst, "k_proj", "kernel"), i),), Linear(1)))
        _dense(rules, f"{src}.self_attn.out_proj", (*dst, "out_proj"), i, weight=Linear(2))
        _dense(rules, f"{src}.fc1", (*dst, "mlp", "fc1"), i)
        _dense(rules, f"{src}.fc2", (*dst, "mlp", "fc2"), i)
    _layer_norm(rules, "layer_norm", ("layer_norm",))
    return rules
