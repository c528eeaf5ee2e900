"""Name tables of Hunyuan-DiT's text encoders: transformers' `BertModel` (the bilingual CLIP
text encoder) and `T5EncoderModel` (mT5) names <-> our parameters."""

from hyv_jax.convert.mapping import Rule, Slot
from hyv_jax.convert.rule_builders import PROJ, dense, layer_norm, norm
from hyv_jax.convert.transforms import Same
from hyv_jax.models.hunyuan_dit.bert import BertConfig
from hyv_jax.models.hunyuan_dit.mt5 import MT5Config


def _table(rules, name, path):
    rules.append(Rule(name, (Slot(path),), Same()))


def bert_rules(config: BertConfig) -> list[Rule]:
    rules: list[Rule] = []
    for e in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        _table(rules, f"embeddings.{e}.weight", ("embeddings", e, "weight"))
    layer_norm(rules, "embeddings.LayerNorm", ("embeddings", "LayerNorm"))
    for i in range(config.num_layers):
        src, dst = f"encoder.layer.{i}", ("layers",)
        for theirs, ours in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
            dense(rules, f"{src}.attention.self.{theirs}", (*dst, ours), i)
        dense(rules, f"{src}.attention.output.dense", (*dst, "out_proj"), i, weight=PROJ)
        layer_norm(rules, f"{src}.attention.output.LayerNorm", (*dst, "norm1"), i)
        dense(rules, f"{src}.intermediate.dense", (*dst, "mlp", "fc1"), i)
        dense(rules, f"{src}.output.dense", (*dst, "mlp", "fc2"), i)
        layer_norm(rules, f"{src}.output.LayerNorm", (*dst, "norm2"), i)
    return rules


def mt5_rules(config: MT5Config) -> list[Rule]:
    rules: list[Rule] = []
    _table(rules, "shared.weight", ("shared", "weight"))
    _table(rules, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", ("relative_attention_bias", "weight"))
    for i in range(config.num_layers):
        src, dst = f"encoder.block.{i}.layer", ("layers",)
        norm(rules, f"{src}.0.layer_norm", (*dst, "norm1"), i)
        for proj in ("q", "k", "v"):
            dense(rules, f"{src}.0.SelfAttention.{proj}", (*dst, proj), i, bias=None)
        dense(rules, f"{src}.0.SelfAttention.o", (*dst, "o"), i, weight=PROJ, bias=None)
        norm(rules, f"{src}.1.layer_norm", (*dst, "norm2"), i)
        for theirs, ours in (("wi_0", "gate_proj"), ("wi_1", "up_proj"), ("wo", "down_proj")):
            dense(rules, f"{src}.1.DenseReluDense.{theirs}", (*dst, "mlp", ours), i, bias=None)
    norm(rules, "encoder.final_layer_norm", ("final_layer_norm",))
    return rules
