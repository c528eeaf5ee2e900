"""Name table of the Llama text encoder: transformers' `LlamaModel` names (no prefix; the
checkpoint reader strips `model.` / `language_model.model.` / `model.language_model.`) <->
our parameters. Only the layers the model keeps (`output_layer`) have entries."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.transforms import Copy, Linear, Same
from hyv_jax.models.text.llama import LlamaConfig

_IN, _OUT = Linear(1), Linear(2)  # (out, in) -> (in, *out) ; (out, heads*head_dim) -> (heads, head_dim, out)

_LAYER = (
    ("self_attn.q_proj", _IN), ("self_attn.k_proj", _IN), ("self_attn.v_proj", _IN), ("self_attn.o_proj", _OUT),
    ("mlp.gate_proj", _IN), ("mlp.up_proj", _IN), ("mlp.down_proj", _IN),
)


def llama_rules(config: LlamaConfig) -> list[Rule]:
    rules = [Rule("embed_tokens.weight", (Slot(("embed_tokens", "weight")),), Same())]
    for i in range(config.output_layer):
        for name, transform in _LAYER:
            rules.append(Rule(f"layers.{i}.{name}.weight", (Slot(("layers", *name.split("."), "kernel"), i),), transform))
        for norm in ("input_layernorm", "post_attention_layernorm"):
            rules.append(Rule(f"layers.{i}.{norm}.weight", (Slot(("layers", norm, "weight"), i),), Copy()))
    if config.output_layer == config.num_layers:
        rules.append(Rule("norm.weight", (Slot(("norm", "weight")),), Copy()))
    return rules
