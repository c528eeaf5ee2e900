"""Name table of the causal 3D VAE: upstream `AutoencoderKLCausal3D` names (= diffusers'
`AutoencoderKLHunyuanVideo` names) <-> our parameters. Our module paths are the upstream ones,
so each torch name maps to the same dotted path with `weight` -> `kernel` for convs/linears."""

from hyv_jax.convert.mapping import Rule
from hyv_jax.convert.rule_builders import LINEAR, dense, layer_norm
from hyv_jax.convert.transforms import Linear
from hyv_jax.models.vae import VAEConfig

# torch Conv3d weight (O, I, kt, kh, kw) <-> our kernel (kt, kh, kw, I, O)
_CONV = Linear(4, torch_in_order=(3, 0, 1, 2), conv_shape=True)


def _layer(rules: list[Rule], name: str, weight) -> None:
    dense(rules, name, tuple(name.split(".")), weight=weight)


def _norm(rules: list[Rule], name: str) -> None:
    layer_norm(rules, name, tuple(name.split(".")))


def _causal(rules: list[Rule], name: str) -> None:
    _layer(rules, f"{name}.conv", _CONV)


def _resnet(rules: list[Rule], name: str, in_channels: int, out_channels: int) -> None:
    _norm(rules, f"{name}.norm1")
    _causal(rules, f"{name}.conv1")
    _norm(rules, f"{name}.norm2")
    _causal(rules, f"{name}.conv2")
    if in_channels != out_channels:
        _causal(rules, f"{name}.conv_shortcut")


def _mid_block(rules: list[Rule], name: str, channels: int) -> None:
    _resnet(rules, f"{name}.resnets.0", channels, channels)
    attn = f"{name}.attentions.0"
    _norm(rules, f"{attn}.group_norm")
    for proj in ("to_q", "to_k", "to_v", "to_out.0"):
        _layer(rules, f"{attn}.{proj}", LINEAR)
    _resnet(rules, f"{name}.resnets.1", channels, channels)


def vae_rules(config: VAEConfig) -> list[Rule]:
    rules: list[Rule] = []
    channels, strides = config.block_out_channels, config.block_strides()

    _causal(rules, "encoder.conv_in")
    for i, (c, stride) in enumerate(zip(channels, strides, strict=True)):
        for j in range(config.layers_per_block):
            _resnet(rules, f"encoder.down_blocks.{i}.resnets.{j}", channels[max(i - 1, 0)] if j == 0 else c, c)
        if stride:
            _causal(rules, f"encoder.down_blocks.{i}.downsamplers.0.conv")
    _mid_block(rules, "encoder.mid_block", channels[-1])
    _norm(rules, "encoder.conv_norm_out")
    _causal(rules, "encoder.conv_out")
    _layer(rules, "quant_conv", _CONV)

    _layer(rules, "post_quant_conv", _CONV)
    up = channels[::-1]
    _causal(rules, "decoder.conv_in")
    _mid_block(rules, "decoder.mid_block", up[0])
    for i, (c, factor) in enumerate(zip(up, strides, strict=True)):
        for j in range(config.layers_per_block + 1):
            _resnet(rules, f"decoder.up_blocks.{i}.resnets.{j}", up[max(i - 1, 0)] if j == 0 else c, c)
        if factor:
            _causal(rules, f"decoder.up_blocks.{i}.upsamplers.0.conv")
    _norm(rules, "decoder.conv_norm_out")
    _causal(rules, "decoder.conv_out")
    return rules
