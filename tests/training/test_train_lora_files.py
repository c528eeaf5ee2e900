"""train.py end to end with LoRA files: a LoRA trained by `train`, exported by `export-lora
--format kohya` and merged into the base reproduces the trained model; `train --init-lora`
starts from that file exactly."""

import numpy as np
from flax import nnx

import train
from configs import load_config
from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND, restore_transformer
from hyv_jax.lora.merge import merge_lora_files
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.training.latent_records import write_records

LORA = ["--config.training.lora.enabled=True", "--config.training.lora.rank=4", "--config.training.lora.alpha=8.0",
        "--config.training.batch_size=8", "--config.training.optimizer.warmup_steps=1", "--config.training.optimizer.lr=0.01",
        "--config.training.checkpoint.async_save=False"]  # the default mesh: FSDP over the 8 simulated devices


def _max_difference(a, b) -> float:
    a, b = params_to_numpy(a), params_to_numpy(b)
    return max(float(np.abs(a[p] - b[p]).max()) for p in a)


def test_kohya_export_of_a_trained_lora_reproduces_it(tmp_path):
    config = TransformerConfig.from_mapping(load_config("configs/tiny.py").transformer)
    save_converted(tmp_path / "base", params_to_numpy(HunyuanVideoTransformer(config, rngs=nnx.Rngs(0))), MODEL_KIND, config,
                   "test", np.float32)
    rng = np.random.default_rng(0)
    write_records(tmp_path / "data", ({"latents": rng.standard_normal((2, 8, 8, 4)), "text_states": rng.standard_normal((6, 32)),
                                       "text_mask": np.array([1, 1, 1, 1, 0, 0]), "text_pooled": rng.standard_normal(16)}
                                      for _ in range(8)))
    common = ["--config", "configs/tiny.py", "--init", str(tmp_path / "base"), *LORA]
    train.main(["train", "--data", str(tmp_path / "data"), "--workdir", str(tmp_path / "run"), "--config.training.steps=2", *common])
    kohya = tmp_path / "kohya.safetensors"
    train.main(["export-lora", "--workdir", str(tmp_path / "run"), "--format", "kohya", "--alpha", "3", "--out", str(kohya), *common])

    merged = restore_transformer(tmp_path / "base")
    merge_lora_files(merged, [(kohya, 1.0)])
    trained = restore_transformer(tmp_path / "run" / "final" / "transformer")
    err = _max_difference(merged, trained)
    change = _max_difference(trained, restore_transformer(tmp_path / "base"))
    print(f"trained LoRA, exported as kohya (alpha 3), merged into the base: max abs err {err:.2e} "
          f"(training moved the weights by up to {change:.2e})")
    assert err < 1e-6 and change > 1e-3

    train.main(["train", "--data", str(tmp_path / "data"), "--workdir", str(tmp_path / "again"), "--init-lora", str(kohya),
                "--config.training.steps=0", *common])
    err = _max_difference(restore_transformer(tmp_path / "again" / "final" / "transformer"), trained)
    print(f"train --init-lora of that file, no step taken: max abs err vs the trained model {err:.2e}")
    assert err < 1e-6
