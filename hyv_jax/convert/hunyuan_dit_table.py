"""Name tables of the Hunyuan-DiT transformer: our parameters <-> the official checkpoint
(`pytorch_model_ema.pt` / `pytorch_model_module.pt`, hydit/modules/models.py names), and the
official layout <-> diffusers' `HunyuanDiT2DModel` (as scripts/convert_hunyuandit_to_diffusers.py
renames it). Built from the config, so they serve the released and the tiny model alike.
"""

from hyv_jax.convert.mapping import Regroup, Rule, Slot
from hyv_jax.convert.rule_builders import PROJ, chunk, dense, layer_norm, rename
from hyv_jax.convert.transforms import Linear, Same
from hyv_jax.models.hunyuan_dit.transformer import HunyuanDiTConfig


def block_slot(config: HunyuanDiTConfig, index: int) -> tuple[tuple[str, ...], int]:
    """Where official block `index` lives: the first depth/2 + 1 in `blocks`, the rest (the
    ones with a skip input) in `skip_blocks`."""
    first = config.depth // 2 + 1
    return (("blocks",), index) if index < first else (("skip_blocks",), index - first)


def hunyuan_dit_rules(config: HunyuanDiTConfig) -> list[Rule]:
    """Official checkpoint names -> our parameter slots."""
    rules: list[Rule] = []
    dense(rules, "mlp_t5.0", ("mlp_t5", "fc1"))
    dense(rules, "mlp_t5.2", ("mlp_t5", "fc2"))
    rules.append(Rule("text_embedding_padding", (Slot(("text_embedding_padding",)),), Same()))
    rules.append(Rule("pooler.positional_embedding", (Slot(("pooler", "positional_embedding")),), Same()))
    for proj in ("q_proj", "k_proj", "v_proj"):
        dense(rules, f"pooler.{proj}", ("pooler", proj))
    dense(rules, "pooler.c_proj", ("pooler", "c_proj"), weight=PROJ)
    if config.size_style_cond:
        rules.append(Rule("style_embedder.weight", (Slot(("style_embedder", "weight")),), Same()))
    # patch conv (D, C, p, p); our kernel is (p, p, C, D)
    dense(rules, "x_embedder.proj", ("x_embedder", "proj"), weight=Linear(3, torch_in_order=(2, 0, 1), conv_shape=True))
    dense(rules, "t_embedder.mlp.0", ("t_embedder", "mlp", "in_layer"))
    dense(rules, "t_embedder.mlp.2", ("t_embedder", "mlp", "out_layer"))
    dense(rules, "extra_embedder.0", ("extra_embedder", "fc1"))
    dense(rules, "extra_embedder.2", ("extra_embedder", "fc2"))
    for i in range(config.depth):
        src, (dst, layer) = f"blocks.{i}", block_slot(config, i)
        for norm in ("norm1", "norm2", "norm3"):
            layer_norm(rules, f"{src}.{norm}", (*dst, norm), layer)
        dense(rules, f"{src}.attn1.Wqkv", (*dst, "attn1", "Wqkv"), layer)
        dense(rules, f"{src}.attn2.q_proj", (*dst, "attn2", "q_proj"), layer)
        dense(rules, f"{src}.attn2.kv_proj", (*dst, "attn2", "kv_proj"), layer)
        for attn in ("attn1", "attn2"):
            layer_norm(rules, f"{src}.{attn}.q_norm", (*dst, attn, "q_norm"), layer)
            layer_norm(rules, f"{src}.{attn}.k_norm", (*dst, attn, "k_norm"), layer)
            dense(rules, f"{src}.{attn}.out_proj", (*dst, attn, "out_proj"), layer, weight=PROJ)
        dense(rules, f"{src}.mlp.fc1", (*dst, "mlp", "fc1"), layer)
        dense(rules, f"{src}.mlp.fc2", (*dst, "mlp", "fc2"), layer)
        dense(rules, f"{src}.default_modulation.1", (*dst, "default_modulation", "linear"), layer)
        if dst == ("skip_blocks",):
            layer_norm(rules, f"{src}.skip_norm", (*dst, "skip_norm"), layer)
            dense(rules, f"{src}.skip_linear", (*dst, "skip_linear"), layer)
    # the final linear's outputs are (p, p, c) upstream as here (its unpatchify reads them so)
    dense(rules, "final_layer.linear", ("final_layer", "linear"))
    dense(rules, "final_layer.adaLN_modulation.1", ("final_layer", "adaLN_modulation", "linear"))
    return rules


def diffusers_regroups(config: HunyuanDiTConfig) -> list[Regroup]:
    """Official names <-> diffusers `HunyuanDiT2DModel` names."""
    d = config.hidden_size
    g: list[Regroup] = []
    rename(g, "mlp_t5.0", "text_embedder.linear_1")
    rename(g, "mlp_t5.2", "text_embedder.linear_2")
    rename(g, "text_embedding_padding", "text_embedding_padding", ("",))
    rename(g, "pooler.positional_embedding", "time_extra_emb.pooler.positional_embedding", ("",))
    for proj in ("q_proj", "k_proj", "v_proj", "c_proj"):
        rename(g, f"pooler.{proj}", f"time_extra_emb.pooler.{proj}")
    if config.size_style_cond:
        rename(g, "style_embedder", "time_extra_emb.style_embedder", ("weight",))
    rename(g, "x_embedder.proj", "pos_embed.proj")
    rename(g, "t_embedder.mlp.0", "time_extra_emb.timestep_embedder.linear_1")
    rename(g, "t_embedder.mlp.2", "time_extra_emb.timestep_embedder.linear_2")
    rename(g, "extra_embedder.0", "time_extra_emb.extra_embedder.linear_1")
    rename(g, "extra_embedder.2", "time_extra_emb.extra_embedder.linear_2")
    for i in range(config.depth):
        b = f"blocks.{i}"
        rename(g, f"{b}.norm1", f"{b}.norm1.norm")
        rename(g, f"{b}.default_modulation.1", f"{b}.norm1.linear")
        chunk(g, f"{b}.attn1.Wqkv", (f"{b}.attn1.to_q", f"{b}.attn1.to_k", f"{b}.attn1.to_v"), (d, d, d))
        rename(g, f"{b}.attn2.q_proj", f"{b}.attn2.to_q")
        chunk(g, f"{b}.attn2.kv_proj", (f"{b}.attn2.to_k", f"{b}.attn2.to_v"), (d, d))
        for attn in ("attn1", "attn2"):
            rename(g, f"{b}.{attn}.q_norm", f"{b}.{attn}.norm_q")
            rename(g, f"{b}.{attn}.k_norm", f"{b}.{attn}.norm_k")
            rename(g, f"{b}.{attn}.out_proj", f"{b}.{attn}.to_out.0")
        # diffusers swaps the names of the cross-attention norm (upstream norm3) and the MLP's (norm2)
        rename(g, f"{b}.norm2", f"{b}.norm3")
        rename(g, f"{b}.norm3", f"{b}.norm2")
        rename(g, f"{b}.mlp.fc1", f"{b}.ff.net.0.proj")
        rename(g, f"{b}.mlp.fc2", f"{b}.ff.net.2")
        if i > config.depth // 2:
            rename(g, f"{b}.skip_norm", f"{b}.skip_norm")
            rename(g, f"{b}.skip_linear", f"{b}.skip_linear")
    rename(g, "final_layer.linear", "proj_out")
    # diffusers' AdaLayerNormContinuous reads (scale, shift), upstream (shift, scale)
    chunk(g, "final_layer.adaLN_modulation.1", ("norm_out.linear",), (d, d), reverse=True)
    return g
