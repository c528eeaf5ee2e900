"""Whisper's log-mel features (what `transformers.WhisperFeatureExtractor` computes), in numpy.

16 kHz audio is zero-padded or cut to 30 s (480,000 samples); a centred STFT (400-point periodic
Hann window, hop 160, reflect padding) gives 3,001 frames of which the last is dropped; the power
spectrum goes through 80 Slaney mel filters (0-8 kHz), then log10 (floored at 1e-10), clamped to
8 below its maximum and mapped by (x + 4) / 4 -> (80, 3000).
"""

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE


def _hz_to_mel(hz):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    mel = hz * 3.0 / 200.0
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel):
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * 200.0 / 3.0)


def mel_filters(n_mels: int = 80, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE, f_max: float = 8000.0) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the Slaney scale, each scaled to unit area
    ("slaney" norm), float64."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(f_max), n_mels + 2))
    bins = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    rising = (bins[:, None] - edges[None, :-2]) / np.diff(edges)[:-1]
    falling = (edges[None, 2:] - bins[:, None]) / np.diff(edges)[1:]
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))


def log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(n_mels, 3000) float32 features of the first 30 s of 16 kHz mono `audio` (1-D)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono 1-D samples at {SAMPLE_RATE} Hz, got shape {audio.shape}")
    audio = np.pad(audio[:CHUNK_SAMPLES], (0, max(0, CHUNK_SAMPLES - len(audio))))
    padded = np.pad(audio, N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[:: HOP][:n_frames]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * window, axis=-1)) ** 2
    mel = power[:-1] @ mel_filters(n_mels)  # the last frame is dropped, as upstream
    spec = np.log10(np.maximum(mel, 1e-10))
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).T.astype(np.float32)


def whisper_features(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """HunyuanCustom's features of a whole clip: one 30 s chunk at a time, concatenated along
    time -> (n_mels, 3000 * chunks). (Only the first chunk feeds the encoder upstream.)"""
    audio = np.asarray(audio, np.float32)
    chunks = [audio[i : i + CHUNK_SAMPLES] for i in range(0, max(len(audio), 1), CHUNK_SAMPLES)]
    return np.concatenate([log_mel(c, n_mels) for c in chunks], axis=1)
