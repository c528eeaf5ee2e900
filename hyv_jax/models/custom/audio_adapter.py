"""HunyuanCustom's audio path (upstream `audio_adapter.py`): Whisper windows -> a few tokens per
video frame (AudioProjNet2), and the per-latent-frame cross-attention that adds them to the
video tokens after some double blocks (PerceiverAttentionCA)."""

import jax
import jax.numpy as jnp
from flax import nnx

from hyv_jax.attention import attention
from hyv_jax.nn.dense import Dense
from hyv_jax.nn.norms import LayerNorm

# torch.nn.LayerNorm's default, which both audio modules use
AUDIO_NORM_EPS = 1e-5


class AudioProjNet2(nnx.Module):
    """(B, F, window, states, channels) Whisper features per video frame -> (B, F, tokens, dim):
    three linears with ReLUs, then a LayerNorm over each token."""

    def __init__(self, window: int, states: int, channels: int, hidden: int, tokens: int, dim: int, *, dtype, param_dtype,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.in_shape = (window, states, channels)
        self.proj1 = Dense(self.in_shape, hidden, in_axes=("audio_window", "audio_states", "audio_channels"),
                           out_axes=("audio_mlp",), **kw)
        self.proj2 = Dense(hidden, hidden, in_axes=("audio_mlp",), out_axes=("audio_mlp",), **kw)
        self.proj3 = Dense(hidden, (tokens, dim), in_axes=("audio_mlp",), out_axes=("audio_tokens", "embed"), **kw)
        self.norm = LayerNorm(dim, eps=AUDIO_NORM_EPS, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, features: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.proj1(features))
        h = jax.nn.relu(self.proj2(h))
        return self.norm(self.proj3(h))


def frame_audio_tokens(tokens: jax.Array, latent_frames: int) -> jax.Array:
    """(B, F, m, D) tokens of F = 4(T'-1)+1 video frames -> (B, T', 4m, D): frame 0's tokens are
    repeated three times in front, so that each latent frame owns the tokens of 4 video frames
    (the causal VAE's first latent frame covers one video frame)."""
    b, f, m, d = tokens.shape
    if f + 3 != 4 * latent_frames:
        raise ValueError(
            f"audio covers {f} video frames but the latents have {latent_frames} frames; "
            f"pass audio windows for 4*(T'-1)+1 = {4 * latent_frames - 3} video frames (zero-padded if the audio is shorter)"
        )
    padded = jnp.concatenate([jnp.repeat(tokens[:, :1], 3, axis=1), tokens], axis=1)
    return padded.reshape(b, latent_frames, 4 * m, d)


class PerceiverAttentionCA(nnx.Module):
    """One-head cross-attention from the video tokens of a latent frame (queries) to that frame's
    audio tokens (keys, values), each side LayerNormed; no biases."""

    def __init__(self, dim: int, inner: int, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = LayerNorm(dim, eps=AUDIO_NORM_EPS, param_dtype=param_dtype, rngs=rngs)  # audio tokens
        self.norm2 = LayerNorm(dim, eps=AUDIO_NORM_EPS, param_dtype=param_dtype, rngs=rngs)  # video tokens
        self.to_q = Dense(dim, inner, in_axes=("embed",), out_axes=("audio_inner",), use_bias=False, **kw)
        self.to_kv = Dense(dim, (2, inner), in_axes=("embed",), out_axes=("kv", "audio_inner"), use_bias=False, **kw)
        self.to_out = Dense(inner, dim, in_axes=("audio_inner",), out_axes=("embed",), use_bias=False, **kw)

    def __call__(self, audio: jax.Array, video: jax.Array) -> jax.Array:
        """audio (B, T', n_audio, D), video (B, T', n_video, D) -> (B, T', n_video, D)."""
        b, t, n, _ = video.shape
        q = self.to_q(self.norm2(video))
        kv = self.to_kv(self.norm1(audio))
        frames = lambda x: x.reshape(b * t, x.shape[2], 1, x.shape[-1])  # noqa: E731  (B*T', L, 1 head, inner)
        # Upstream scales q and k by inner^(-1/4) each: the same 1/sqrt(inner) logits. Always the
        # XLA path: 16 keys per query make tiny logits, and kernels do not take a 1024 head dim.
        out = attention(frames(q), frames(kv[..., 0, :]), frames(kv[..., 1, :]), impl="xla")
        return self.to_out(out.reshape(b, t, n, -1))
