"""A tiny Hunyuan-DiT (v1.2 structure) for tests and CPU runs: random weights with the small
tokenizers shipped in hyv_jax/assets/tiny_hunyuan_dit (built by its build.py)."""

from configs import hunyuan_dit


def get_config():
    config = hunyuan_dit.get_config()
    config.transformer.update(
        hidden_size=64, heads=2, depth=6, mlp_ratio=4.0, text_states_dim=32, text_len=56, text_states_dim_t5=48,
        text_len_t5=56, pooler_out_dim=24, dtype="float32", param_dtype="float32", attention_impl="xla",
    )
    config.text_encoder.bert.update(vocab_size=512, hidden_size=32, intermediate_size=64, num_layers=2, heads=4, max_positions=64,
                                    dtype="float32", param_dtype="float32")
    config.text_encoder.mt5.update(vocab_size=512, d_model=48, d_kv=8, heads=6, d_ff=64, num_layers=2,
                                   relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                   dtype="float32", param_dtype="float32")
    config.text_encoder.update(bert_max_length=56, mt5_max_length=56, shipped_tokenizers="tiny_hunyuan_dit")
    config.vae.update(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_groups=4)
    config.sampling.update(height=64, width=64, steps=10)
    config.allow_random_weights = True
    return config
