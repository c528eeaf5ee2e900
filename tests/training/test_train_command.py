"""train.py as a user meets it: its --help example trains with the schedule it implies, and a
checkpoint of another config given to --init ends in one line that says so."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from flax import nnx

import train
from configs import load_config
from hyv_jax.convert.converted_model import save_converted
from hyv_jax.convert.model_state import params_to_numpy
from hyv_jax.convert.transformer_checkpoint import MODEL_KIND
from hyv_jax.models.transformer import HunyuanVideoTransformer, TransformerConfig
from hyv_jax.training.optimizer import make_optimizer

ROOT = Path(__file__).parents[2]


def test_the_help_example_decays_over_its_own_steps():
    example = train.__doc__.split("Full training")[1].split("\n\n")[0].split("13B")[0]
    config_file = re.search(r"--config (\S+)", example).group(1)
    overrides = re.findall(r"--config\.(\S+)", example)
    assert any(o.startswith("training.steps=") for o in overrides), example
    tc = load_config(config_file, overrides).training
    _, schedule = make_optimizer(tc.optimizer, tc.steps)
    peak = tc.optimizer.lr
    lrs = {s: float(schedule(s)) for s in (tc.steps // 2, tc.steps * 3 // 4, tc.steps - 1)}
    print(f"{tc.steps} steps, peak lr {peak}: {lrs}")
    assert lrs[tc.steps * 3 // 4] > 0.1 * peak  # with the 1000-step default schedule this was 0
    assert lrs[tc.steps - 1] < 1e-3 * peak  # the decay ends with the run


def test_init_of_another_configs_checkpoint_ends_in_one_line(tmp_path):
    config = load_config("configs/tiny.py", ["transformer.double_blocks=1"])
    model = HunyuanVideoTransformer(TransformerConfig.from_mapping(config.transformer), rngs=nnx.Rngs(0))
    save_converted(tmp_path / "other", params_to_numpy(model), MODEL_KIND, model.config, "test", np.float32)
    result = subprocess.run([sys.executable, "train.py", "train", "--config", "configs/tiny.py", "--init", str(tmp_path / "other"),
                             "--data", str(tmp_path / "data"), "--workdir", str(tmp_path / "w")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # conftest: CPU, no compilation cache
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"train.py: error: {tmp_path / 'other'} does not fit the model: double_blocks/") and \
        "double_blocks (stored 1, config 2)" in line, line
