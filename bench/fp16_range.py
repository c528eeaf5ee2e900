"""fp16 against float32 for the text encoders and the VAE at their real widths, on random weights,
with activations at the scales the real models reach: does anything overflow, and how far does
fp16 land from float32?

- Llama-3 (4096 wide, 14336 MLP, 32/8 heads): decoder layers fed hidden states with Llama-3's
  outlier channels: every token ~N(0, 0.5) plus a few channels at tens, and the BOS token's
  "massive activations" at several hundred to thousands (--bos-outliers).
- CLIP-L text (768, 12 heads) and the LLaVA vision tower's layer (1024, 16 heads): encoder
  layers with outlier channels at hundreds.
- The VAE (128/256/512/512 channels): the decoder on latents N(0, 1) / scaling factor, the
  encoder on a video in [-1, 1]; again with every resnet's residual branch scaled up (--vae-gain)
  until the residual stream reaches thousands, as in trained VAE decoders' last blocks.

Per module it prints the largest |value| the float32 run reaches anywhere (the inputs of every
norm and the output), whether the fp16 run stays finite, and the fp16 output's max abs error
relative to the float32 output's max. CPU, a few minutes:

    python bench/fp16_range.py
"""

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyv_jax.models.text.llama import LlamaConfig, LlamaModel  # noqa: E402
from hyv_jax.models.vae import CausalVideoVAE, VAEConfig  # noqa: E402
from hyv_jax.nn import group_norm, norms  # noqa: E402
from hyv_jax.nn.encoder_layer import EncoderLayer  # noqa: E402


class Peaks:
    """Records the largest |input| every norm sees (the residual streams and branch outputs)."""

    def __init__(self):
        self.value = 0.0
        self._patched = []

    def __enter__(self):
        for module, cls in ((norms, "LayerNorm"), (norms, "RMSNorm"), (group_norm, "GroupNorm")):
            klass = getattr(module, cls)
            original = klass.__call__

            def call(this, x, _original=original):
                # a callback, not float(): the layers run inside lax.scan
                jax.debug.callback(self._record, jnp.max(jnp.abs(x.astype(jnp.float32))))
                return _original(this, x)

            klass.__call__ = call
            self._patched.append((klass, original))
        return self

    def _record(self, value) -> None:
        self.value = max(self.value, float(value))

    def __exit__(self, *exc):
        for klass, original in self._patched:
            klass.__call__ = original


def compare(name: str, build, run, inputs, adjust=lambda state: state) -> None:
    """build(dtype) -> model with that compute and parameter dtype; the fp16 model gets the
    float32 model's parameters (after `adjust`) rounded to fp16. run(model, *inputs) in both."""
    model32 = build("float32")
    params = adjust(nnx.state(model32, nnx.Param))
    nnx.update(model32, params)
    with Peaks() as peaks:
        ref = np.asarray(run(model32, *inputs), np.float32)
    model16 = build("float16")
    nnx.update(model16, jax.tree.map(lambda a: a.astype(jnp.float16), params))
    half = tuple(a.astype(np.float16) if np.issubdtype(a.dtype, np.floating) else a for a in inputs)
    with Peaks() as peaks16:
        got = np.asarray(run(model16, *half), np.float32)
    peak = max(peaks.value, float(np.abs(ref).max()))
    finite = bool(np.isfinite(got).all())
    rel = float(np.abs(got - ref).max() / np.abs(ref).max()) if finite else float("nan")
    print(f"{name:58s} peak |x| {peak:10.1f} (fp16 run {peaks16.value:10.1f})  fp16 finite {str(finite):5s}  "
          f"max err / max |out| {rel:.2e}", flush=True)


def llama_hidden(rng, tokens: int, width: int, bos: list[float]) -> np.ndarray:
    x = rng.standard_normal((1, tokens, width)).astype(np.float32) * 0.5
    channels = rng.choice(width, 8, replace=False)
    x[..., channels] += rng.uniform(20, 80, 8).astype(np.float32) * rng.choice([-1, 1], 8)  # persistent outliers
    for c, v in zip(channels[:len(bos)], bos):
        x[0, 0, c] = v  # the BOS token's massive activations
    return x


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--bos-outliers", type=float, nargs="+", default=[300.0, 1000.0, 3000.0])
    parser.add_argument("--vae-gain", type=float, nargs="+", default=[1.0, 30.0, 300.0])
    parser.add_argument("--skip", nargs="*", default=[], choices=["llama", "clip", "vae"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")

    if "llama" not in args.skip:
        def llama(dtype):
            return LlamaModel(LlamaConfig(num_layers=2, output_layer=2, vocab_size=16, dtype=dtype, param_dtype=dtype),
                              rngs=nnx.Rngs(0))
        mask = np.ones((1, args.tokens), np.int32)
        for bos in ([], args.bos_outliers, [v * 4 for v in args.bos_outliers]):
            x = llama_hidden(rng, args.tokens, 4096, bos)
            compare(f"llama-3 2 decoder layers, BOS outliers {bos or 'none'}", llama, lambda m, h: m.from_embeddings(h, mask), (x,))

    if "clip" not in args.skip:
        for name, dim, heads, mlp, tokens in (("CLIP-L text layer", 768, 12, 3072, 77), ("LLaVA vision tower layer", 1024, 16, 4096, 577)):
            def layer(dtype, dim=dim, heads=heads, mlp=mlp):
                return EncoderLayer(dim, heads, mlp, "quick_gelu", eps=1e-5, dtype=jnp.dtype(dtype), param_dtype=jnp.dtype(dtype),
                                    rngs=nnx.Rngs(1))
            x = rng.standard_normal((1, tokens, dim)).astype(np.float32)
            x[..., rng.choice(dim, 4, replace=False)] = np.float32(300.0)
            x[0, 0, 7] = 1500.0
            compare(f"{name}, outlier channels 300, one 1500", layer, lambda m, h: m(h), (x,))

    if "vae" not in args.skip:
        def vae(dtype):
            return CausalVideoVAE(VAEConfig(dtype=dtype, param_dtype=dtype), rngs=nnx.Rngs(2))
        latent = (rng.standard_normal((1, 2, 4, 4, 16)) / 0.476986).astype(np.float32)
        video = rng.uniform(-1, 1, (1, 5, 32, 32, 3)).astype(np.float32)
        for gain in args.vae_gain:
            scale = lambda state, gain=gain: jax.tree_util.tree_map_with_path(  # noqa: E731
                lambda path, a: a * gain if any(getattr(k, "key", None) == "conv2" for k in path) else a, state)
            compare(f"VAE decoder, residual branches x{gain:g}", vae, lambda m, z: m.decode_frames(z), (latent,), scale)
            compare(f"VAE encoder, residual branches x{gain:g}", vae, lambda m, x: m.encode_moments(x), (video,), scale)


if __name__ == "__main__":
    main()
