"""Name table of the Llama text encoder: transformers' `LlamaModel` names (no prefix; the
checkpoint reader strips `model.` / `language_model.model.` / `model.language_model.`) <->
our parameters. Only the layers the model keeps (`output_layer`) have entries."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.rule_builders import LINEAR, PROJ, dense, norm
from hyv_jax.convert.transforms import Same
from hyv_jax.models.text.llama import LlamaConfig

_LAYER = (
    ("self_attn.q_proj", LINEAR), ("self_attn.k_proj", LINEAR), ("self_attn.v_proj", LINEAR), ("self_attn.o_proj", PROJ),
    ("mlp.gate_proj", LINEAR), ("mlp.up_proj", LINEAR), ("mlp.down_proj", LINEAR),
)


def llama_rules(config: LlamaConfig) -> list[Rule]:
    rules = [Rule("embed_tokens.weight", (Slot(("embed_tokens", "weight")),), Same())]
    for i in range(config.output_layer):
        for name, transform in _LAYER:
            dense(rules, f"layers.{i}.{name}", ("layers", *name.split(".")), i, weight=transform, bias=None)
        for name in ("input_layernorm", "post_attention_layernorm"):
            norm(rules, f"layers.{i}.{name}", ("layers", name), i)
    if config.output_layer == config.num_layers:
        norm(rules, "norm", ("norm",))
    return rules
