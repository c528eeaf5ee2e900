"""Name table of the causal 3D VAE: upstream `AutoencoderKLCausal3D` names (= diffusers'
`AutoencoderKLHunyuanVideo` names) <-> our parameters. Our module paths are the upstream ones,
so each torch name maps to the same dotted path with `weight` -> `kernel` for convs/linears."""

from collections.abc import Callable, Sequence

from hyv_jax.convert.mapping import Rule
from hyv_jax.convert.rule_builders import LINEAR, dense, layer_norm
from hyv_jax.convert.transforms import Linear
from hyv_jax.models.vae import VAEConfig

# torch Conv3d weight (O, I, kt, kh, kw) <-> our kernel (kt, kh, kw, I, O)
_CONV = Linear(4, torch_in_order=(3, 0, 1, 2), conv_shape=True)


def layer(rules: list[Rule], name: str, weight) -> None:
    """A conv or linear at the module path spelled by its torch name."""
    dense(rules, name, tuple(name.split(".")), weight=weight)


def _norm(rules: list[Rule], name: str) -> None:
    layer_norm(rules, name, tuple(name.split(".")))


def _causal(rules: list[Rule], name: str) -> None:
    layer(rules, f"{name}.conv", _CONV)


def _resnet(rules: list[Rule], name: str, in_channels: int, out_channels: int, conv: Callable) -> None:
    _norm(rules, f"{name}.norm1")
    conv(rules, f"{name}.conv1")
    _norm(rules, f"{name}.norm2")
    conv(rules, f"{name}.conv2")
    if in_channels != out_channels:
        conv(rules, f"{name}.conv_shortcut")


def _mid_block(rules: list[Rule], name: str, channels: int, conv: Callable) -> None:
    _resnet(rules, f"{name}.resnets.0", channels, channels, conv)
    attn = f"{name}.attentions.0"
    _norm(rules, f"{attn}.group_norm")
    for proj in ("to_q", "to_k", "to_v", "to_out.0"):
        layer(rules, f"{attn}.{proj}", LINEAR)
    _resnet(rules, f"{name}.resnets.1", channels, channels, conv)


def autoencoder_rules(channels: Sequence[int], layers_per_block: int, resampled: Sequence[bool], conv: Callable,
                      quant_conv) -> list[Rule]:
    """The encoder/decoder tables diffusers' autoencoders share: `conv(rules, name)` adds one
    conv's rules (the causal 3D VAE's sit under `.conv`), `quant_conv` is the transform of the
    1x1 quant convs, `resampled[i]` whether block i (encoder order) down/upsamples."""
    rules: list[Rule] = []
    conv(rules, "encoder.conv_in")
    for i, (c, resample) in enumerate(zip(channels, resampled, strict=True)):
        for j in range(layers_per_block):
            _resnet(rules, f"encoder.down_blocks.{i}.resnets.{j}", channels[max(i - 1, 0)] if j == 0 else c, c, conv)
        if resample:
            conv(rules, f"encoder.down_blocks.{i}.downsamplers.0.conv")
    _mid_block(rules, "encoder.mid_block", channels[-1], conv)
    _norm(rules, "encoder.conv_norm_out")
    conv(rules, "encoder.conv_out")
    layer(rules, "quant_conv", quant_conv)

    layer(rules, "post_quant_conv", quant_conv)
    up = channels[::-1]
    conv(rules, "decoder.conv_in")
    _mid_block(rules, "decoder.mid_block", up[0], conv)
    for i, (c, resample) in enumerate(zip(up, resampled, strict=True)):
        for j in range(layers_per_block + 1):
            _resnet(rules, f"decoder.up_blocks.{i}.resnets.{j}", up[max(i - 1, 0)] if j == 0 else c, c, conv)
        if resample:
            conv(rules, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    _norm(rules, "decoder.conv_norm_out")
    conv(rules, "decoder.conv_out")
    return rules


def vae_rules(config: VAEConfig) -> list[Rule]:
    return autoencoder_rules(config.block_out_channels, config.layers_per_block, [bool(s) for s in config.block_strides()],
                             _causal, _CONV)
