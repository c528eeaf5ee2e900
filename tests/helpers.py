"""Shared test helpers: fixtures from the official code, references, error reports."""

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str) -> dict[str, np.ndarray]:
    from hyv_jax.convert.safetensors_io import SafetensorsFile

    f = SafetensorsFile(FIXTURES / f"{name}.safetensors")
    return {k: np.array(f.get(k)) for k in f.keys()}


def fixture_params(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}


def channels_last(x: np.ndarray) -> np.ndarray:
    """(B, C, T, H, W) -> (B, T, H, W, C)."""
    return np.moveaxis(np.asarray(x), 1, -1)


def report(name: str, ours, ref) -> tuple[float, float]:
    """Prints and returns (max abs error, max abs error / max abs reference)."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != reference {ref.shape}"
    err = float(np.max(np.abs(ours - ref)))
    rel = err / float(np.max(np.abs(ref)))
    print(f"{name}: max abs err {err:.3e}, relative to max |ref| {rel:.3e}")
    return err, rel


def torch_random_init(module, seed: int) -> None:
    """Overwrites every parameter as the fixtures do: matrices N(0, 1/fan_in), biases
    N(0, 0.1^2), other vectors 1 + N(0, 0.1^2); nothing stays zero or identity."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) / np.sqrt(np.prod(p.shape[1:])))
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(1 + torch.randn(p.shape, generator=gen) * 0.1)


def torch_timestep_frequencies(half, max_period):
    import math

    import torch

    return torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half).numpy()


def diffusers_tiny(seed=3):
    """diffusers' HunyuanVideoTransformer3DModel at the tiny config (configs/tiny.py), random non-zero."""
    from diffusers import HunyuanVideoTransformer3DModel

    model = HunyuanVideoTransformer3DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=32, num_layers=2,
        num_single_layers=2, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
        qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=32, pooled_projection_dim=16,
        rope_theta=256.0, rope_axes_dim=(8, 12, 12),
    ).eval()
    torch_random_init(model, seed)
    return model


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height and which holds no pixels: only a reader of
    the header may accept it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
    return path


def run_cli(main, argv, program: str, capsys):
    """A command line's main in-process under run_command: (exit status, captured stdout/stderr)."""
    from configs.command_line import run_command

    try:
        run_command(main, argv, program)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr()
