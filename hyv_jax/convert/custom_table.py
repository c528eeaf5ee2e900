"""Name table of the HunyuanCustom transformer: HunyuanVideo's table (no `guidance_in`) plus
the video-condition (`bg_in`, `bg_proj`) and audio (`audio_proj`, `audio_models.*`) modules
present in the config."""

from hyv_jax.convert.mapping import Rule
from hyv_jax.convert.rule_builders import dense, layer_norm
from hyv_jax.convert.transformer_table import transformer_rules
from hyv_jax.convert.transforms import Linear
from hyv_jax.models.custom.transformer import CustomTransformerConfig

# patch conv (O, C, pt, ph, pw); our kernel is (pt, ph, pw, C, O)
_PATCH_CONV = Linear(4, torch_in_order=(3, 0, 1, 2), conv_shape=True)


def custom_rules(config: CustomTransformerConfig) -> list[Rule]:
    """Original HunyuanCustom checkpoint names -> our parameter slots."""
    rules = transformer_rules(config)
    if config.video_condition:
        dense(rules, "bg_in.proj", ("bg_in", "proj"), weight=_PATCH_CONV)
        dense(rules, "bg_proj", ("bg_proj",))
    if config.audio_condition:
        # proj1 reads the (window, states, channels) features flattened in that order
        dense(rules, "audio_proj.proj1", ("audio_proj", "proj1"), weight=Linear(3))
        dense(rules, "audio_proj.proj2", ("audio_proj", "proj2"))
        dense(rules, "audio_proj.proj3", ("audio_proj", "proj3"))  # outputs (tokens, dim) row-major
        layer_norm(rules, "audio_proj.norm", ("audio_proj", "norm"))
        for k in range(len(config.audio_insert_after)):
            src, dst = f"audio_models.{k}", ("audio_models",)
            layer_norm(rules, f"{src}.norm1", (*dst, "norm1"), k)
            layer_norm(rules, f"{src}.norm2", (*dst, "norm2"), k)
            for name in ("to_q", "to_kv", "to_out"):  # to_kv rows are [k | v]
                dense(rules, f"{src}.{name}", (*dst, name), k, bias=None)
    return rules
