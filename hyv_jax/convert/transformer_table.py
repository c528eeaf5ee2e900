"""Name tables of the HunyuanVideo transformer: our parameters <-> the original Tencent
checkpoint (`mp_rank_00_model_states.pt`), and the original layout <-> diffusers'.

Both are built from the config; widths come from it (never from a constant), so the tables
serve the 13B model and the tiny test model alike.
"""

from hyv_jax.convert.mapping import Regroup, Rule, Slot
from hyv_jax.convert.rule_builders import LINEAR, PROJ, chunk, dense, layer_norm, norm, rename
from hyv_jax.convert.transforms import Copy, Linear, Split
from hyv_jax.models.transformer import TransformerConfig



def _embedder(rules, name, path, first, second):
    dense(rules, f"{name}.{first}", (*path, "in_layer"))
    dense(rules, f"{name}.{second}", (*path, "out_layer"))


def transformer_rules(config: TransformerConfig) -> list[Rule]:
    """Original checkpoint names -> our parameter slots."""
    rules: list[Rule] = []
    # patch conv (O, C, pt, ph, pw); our kernel is (pt, ph, pw, C, O)
    dense(rules, "img_in.proj", ("img_in", "proj"), weight=Linear(4, torch_in_order=(3, 0, 1, 2), conv_shape=True))
    dense(rules, "txt_in.input_embedder", ("txt_in", "input_embedder"))
    _embedder(rules, "txt_in.t_embedder.mlp", ("txt_in", "t_embedder", "mlp"), "0", "2")
    _embedder(rules, "txt_in.c_embedder", ("txt_in", "c_embedder"), "linear_1", "linear_2")
    for i in range(config.refiner_blocks):
        src, dst = f"txt_in.individual_token_refiner.blocks.{i}", ("txt_in", "blocks")
        for name in ("norm1", "norm2"):
            layer_norm(rules, f"{src}.{name}", (*dst, name), i)
        dense(rules, f"{src}.self_attn_qkv", (*dst, "self_attn_qkv"), i)
        dense(rules, f"{src}.self_attn_proj", (*dst, "self_attn_proj"), i, weight=PROJ)
        dense(rules, f"{src}.mlp.fc1", (*dst, "mlp", "fc1"), i)
        dense(rules, f"{src}.mlp.fc2", (*dst, "mlp", "fc2"), i)
        dense(rules, f"{src}.adaLN_modulation.1", (*dst, "adaLN_modulation", "linear"), i)
    _embedder(rules, "time_in.mlp", ("time_in", "mlp"), "0", "2")
    if config.guidance_embed:
        _embedder(rules, "guidance_in.mlp", ("guidance_in", "mlp"), "0", "2")
    _embedder(rules, "vector_in", ("vector_in",), "in_layer", "out_layer")

    for i in range(config.double_blocks):
        src, dst = f"double_blocks.{i}", ("double_blocks",)
        for s in ("img", "txt"):
            dense(rules, f"{src}.{s}_mod.linear", (*dst, f"{s}_mod", "linear"), i)
            dense(rules, f"{src}.{s}_attn_qkv", (*dst, f"{s}_attn_qkv"), i)
            norm(rules, f"{src}.{s}_attn_q_norm", (*dst, f"{s}_attn_q_norm"), i)
            norm(rules, f"{src}.{s}_attn_k_norm", (*dst, f"{s}_attn_k_norm"), i)
            dense(rules, f"{src}.{s}_attn_proj", (*dst, f"{s}_attn_proj"), i, weight=PROJ)
            dense(rules, f"{src}.{s}_mlp.fc1", (*dst, f"{s}_mlp", "fc1"), i)
            dense(rules, f"{src}.{s}_mlp.fc2", (*dst, f"{s}_mlp", "fc2"), i)

    for i in range(config.single_blocks):
        src, dst = f"single_blocks.{i}", ("single_blocks",)
        slot = lambda *p: Slot((*dst, *p), i)  # noqa: E731
        # linear1 rows are [q | k | v | mlp]; linear2 columns are [attn | mlp]
        rules.append(Rule(f"{src}.linear1.weight", (slot("linear1_qkv", "kernel"), slot("linear1_mlp", "kernel")), Split(0, (LINEAR, LINEAR))))
        rules.append(Rule(f"{src}.linear1.bias", (slot("linear1_qkv", "bias"), slot("linear1_mlp", "bias")), Split(0, (Copy(), Copy()))))
        rules.append(Rule(f"{src}.linear2.weight", (slot("linear2_attn", "kernel"), slot("linear2_mlp", "kernel")), Split(1, (PROJ, LINEAR))))
        rules.append(Rule(f"{src}.linear2.bias", (slot("linear2_mlp", "bias"),), Copy()))
        norm(rules, f"{src}.q_norm", (*dst, "q_norm"), i)
        norm(rules, f"{src}.k_norm", (*dst, "k_norm"), i)
        dense(rules, f"{src}.modulation.linear", (*dst, "modulation", "linear"), i)

    # final linear outputs are (c, pt, ph, pw) upstream, (pt, ph, pw, c) here
    dense(rules, "final_layer.linear", ("final_layer", "linear"),
           weight=Linear(1, torch_out_order=(3, 0, 1, 2)), bias=Copy(torch_order=(3, 0, 1, 2)))
    dense(rules, "final_layer.adaLN_modulation.1", ("final_layer", "adaLN_modulation", "linear"))
    return rules


def diffusers_regroups(config: TransformerConfig) -> list[Regroup]:
    """Original names <-> diffusers `HunyuanVideoTransformer3DModel` names."""
    d = config.hidden_size
    mlp = int(d * config.mlp_ratio)
    qkv = (d, d, d)
    g: list[Regroup] = []
    rename(g, "img_in.proj", "x_embedder.proj")
    rename(g, "time_in.mlp.0", "time_text_embed.timestep_embedder.linear_1")
    rename(g, "time_in.mlp.2", "time_text_embed.timestep_embedder.linear_2")
    if config.guidance_embed:
        rename(g, "guidance_in.mlp.0", "time_text_embed.guidance_embedder.linear_1")
        rename(g, "guidance_in.mlp.2", "time_text_embed.guidance_embedder.linear_2")
    rename(g, "vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    rename(g, "vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    rename(g, "txt_in.input_embedder", "context_embedder.proj_in")
    rename(g, "txt_in.t_embedder.mlp.0", "context_embedder.time_text_embed.timestep_embedder.linear_1")
    rename(g, "txt_in.t_embedder.mlp.2", "context_embedder.time_text_embed.timestep_embedder.linear_2")
    rename(g, "txt_in.c_embedder.linear_1", "context_embedder.time_text_embed.text_embedder.linear_1")
    rename(g, "txt_in.c_embedder.linear_2", "context_embedder.time_text_embed.text_embedder.linear_2")
    for i in range(config.refiner_blocks):
        o, n = f"txt_in.individual_token_refiner.blocks.{i}", f"context_embedder.token_refiner.refiner_blocks.{i}"
        rename(g, f"{o}.norm1", f"{n}.norm1")
        rename(g, f"{o}.norm2", f"{n}.norm2")
        chunk(g, f"{o}.self_attn_qkv", (f"{n}.attn.to_q", f"{n}.attn.to_k", f"{n}.attn.to_v"), qkv)
        rename(g, f"{o}.self_attn_proj", f"{n}.attn.to_out.0")
        rename(g, f"{o}.mlp.fc1", f"{n}.ff.net.0.proj")
        rename(g, f"{o}.mlp.fc2", f"{n}.ff.net.2")
        rename(g, f"{o}.adaLN_modulation.1", f"{n}.norm_out.linear")
    for i in range(config.double_blocks):
        o, n = f"double_blocks.{i}", f"transformer_blocks.{i}"
        rename(g, f"{o}.img_mod.linear", f"{n}.norm1.linear")
        rename(g, f"{o}.txt_mod.linear", f"{n}.norm1_context.linear")
        chunk(g, f"{o}.img_attn_qkv", (f"{n}.attn.to_q", f"{n}.attn.to_k", f"{n}.attn.to_v"), qkv)
        chunk(g, f"{o}.txt_attn_qkv", (f"{n}.attn.add_q_proj", f"{n}.attn.add_k_proj", f"{n}.attn.add_v_proj"), qkv)
        for o_norm, n_norm in (("img_attn_q_norm", "norm_q"), ("img_attn_k_norm", "norm_k"),
                               ("txt_attn_q_norm", "norm_added_q"), ("txt_attn_k_norm", "norm_added_k")):
            rename(g, f"{o}.{o_norm}", f"{n}.attn.{n_norm}", ("weight",))
        rename(g, f"{o}.img_attn_proj", f"{n}.attn.to_out.0")
        rename(g, f"{o}.txt_attn_proj", f"{n}.attn.to_add_out")
        for stream, ff in (("img", "ff"), ("txt", "ff_context")):
            rename(g, f"{o}.{stream}_mlp.fc1", f"{n}.{ff}.net.0.proj")
            rename(g, f"{o}.{stream}_mlp.fc2", f"{n}.{ff}.net.2")
    for i in range(config.single_blocks):
        o, n = f"single_blocks.{i}", f"single_transformer_blocks.{i}"
        chunk(g, f"{o}.linear1", (f"{n}.attn.to_q", f"{n}.attn.to_k", f"{n}.attn.to_v", f"{n}.proj_mlp"), (*qkv, mlp))
        rename(g, f"{o}.linear2", f"{n}.proj_out")
        rename(g, f"{o}.q_norm", f"{n}.attn.norm_q", ("weight",))
        rename(g, f"{o}.k_norm", f"{n}.attn.norm_k", ("weight",))
        rename(g, f"{o}.modulation.linear", f"{n}.norm.linear")
    rename(g, "final_layer.linear", "proj_out")
    chunk(g, "final_layer.adaLN_modulation.1", ("norm_out.linear",), (d, d), reverse=True)
    return g
