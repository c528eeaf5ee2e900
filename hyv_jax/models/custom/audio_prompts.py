"""Speech -> HunyuanCustom's `audio_prompts`: 16 kHz audio (librosa), Whisper features, the
Whisper encoder's stacked hidden states at 50 Hz, then one window of states per video frame.

Windows (upstream `encode_audio`): 4 zero states are prepended; video frame f (25 fps, 640
samples) takes padded states [2f, 2f + 10). Only the first 30 s feed the encoder, and
min(video frames, samples // 640) frames get audio; the rest are zeros.
"""

import warnings
from pathlib import Path

import numpy as np

from hyv_jax.models.custom.whisper_features import SAMPLE_RATE, log_mel

FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
WINDOW = 10  # states per video frame
LEAD = 4  # zero states in front


def load_audio(path) -> np.ndarray:
    """Mono float32 samples at 16 kHz (resampled by librosa from any rate it can read)."""
    import librosa

    if not Path(path).is_file():
        raise FileNotFoundError(f"audio {path} {'is not a file' if Path(path).exists() else 'does not exist'}")
    try:
        with warnings.catch_warnings():  # librosa warns before falling back to audioread; the error below says it all
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            audio, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
    except Exception as e:  # librosa raises several types for unreadable input
        raise ValueError(f"cannot read audio {path}: {_reason(e)}; pass a wav/flac/mp3 file that librosa can decode") from e
    if audio.size == 0:
        raise ValueError(f"audio {path} holds no samples")
    return audio.astype(np.float32)


def _reason(error: BaseException) -> str:
    """What the decoders said. librosa tries soundfile first, then audioread, whose errors
    (EOFError, NoBackendError) carry no message: name soundfile's error, then the fallback's."""
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    said = [" ".join(str(e).split()) for e in reversed(chain) if str(e).strip()]
    first = said[0] if said else "no decoder recognised the file"
    return first if len(chain) == 1 else f"{first} (the fallback decoder failed too: {type(chain[0]).__name__})"


def audio_frames(n_samples: int, video_frames: int, what: str = "the audio") -> int:
    """How many video frames the audio drives: min(frames, samples // 640), the rest get none
    (upstream hymm_sp/data_kits/video_dataset.py:59-65 pads with zeros). Audio that cannot
    drive a single frame is refused: it would silently do nothing."""
    covered = min(video_frames, n_samples // SAMPLES_PER_FRAME)
    if covered < 1:
        raise ValueError(f"{what} lasts {1000 * n_samples / SAMPLE_RATE:.0f} ms, less than one video frame "
                         f"({1000 // FPS} ms at {FPS} fps): it would drive nothing; pass at least "
                         f"{video_frames / FPS:.2f} s of speech for {video_frames} frames")
    return covered


def frame_windows(states: np.ndarray, n_samples: int, video_frames: int) -> np.ndarray:
    """states (B, 1500, S, D) at 50 Hz -> audio_prompts (B, video_frames, 10, S, D)."""
    states = np.asarray(states)
    b, n, s, d = states.shape
    frames = audio_frames(n_samples, video_frames)
    if 2 * (frames - 1) + WINDOW > n + LEAD:
        raise ValueError(f"{frames} video frames need {2 * (frames - 1) + WINDOW - LEAD} audio states, the encoder gave {n}")
    padded = np.concatenate([np.zeros((b, LEAD, s, d), states.dtype), states], axis=1)
    index = 2 * np.arange(frames)[:, None] + np.arange(WINDOW)[None]
    out = np.zeros((b, video_frames, WINDOW, s, d), states.dtype)
    out[:, :frames] = padded[:, index]
    return out


def encode_audio(encoder, audio: np.ndarray, video_frames: int) -> np.ndarray:
    """audio_prompts (1, video_frames, 10, S, D) of 16 kHz samples through a WhisperEncoder."""
    mel = log_mel(audio)[:, : 2 * encoder.config.positions]  # the encoder sees the first 30 s window only
    states = np.asarray(encoder(mel.T[None]), np.float32)
    return frame_windows(states, len(audio), video_frames)
