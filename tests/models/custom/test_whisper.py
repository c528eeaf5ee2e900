"""Whisper for HunyuanCustom's audio: log-mel features vs transformers.WhisperFeatureExtractor,
the encoder's stacked hidden states vs transformers.WhisperModel (tiny random config, float32),
the per-frame windows at 25 fps, 16 kHz loading, and checkpoint key handling."""

import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from helpers import report, torch_random_init

from hyv_jax.convert.checkpoint_source import from_arrays
from hyv_jax.convert.mapping import CheckpointMismatch
from hyv_jax.convert.model_state import load_params
from hyv_jax.convert.whisper_checkpoint import read_torch_whisper_encoder
from hyv_jax.models.custom.audio_prompts import encode_audio, frame_windows, load_audio
from hyv_jax.models.custom.whisper_encoder import WhisperEncoder, WhisperEncoderConfig
from hyv_jax.models.custom.whisper_features import log_mel, mel_filters, whisper_features

TINY = WhisperEncoderConfig(dim=16, heads=2, layers=4, ffn_dim=32)


def speech_like(seconds, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def test_log_mel_matches_transformers():
    extractor = transformers.WhisperFeatureExtractor()
    np.testing.assert_allclose(mel_filters(), extractor.mel_filters, rtol=0, atol=1e-12)
    audio = speech_like(7.3)
    ref = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    _, rel = report("whisper log-mel (7.3 s)", log_mel(audio), ref)
    assert rel < 1e-5


def test_long_audio_is_featurised_per_30s_chunk():
    """As upstream's get_audio_feature: 750*640-sample chunks, features concatenated in time.
    transformers' default (torch.stft, fp32) and its own numpy path differ by up to ~2e-5 on
    such input; ours follows the numpy path to float32 rounding."""
    extractor = transformers.WhisperFeatureExtractor()
    audio = speech_like(34.0, seed=1)
    chunks = [np.pad(audio[i:i + 480000], (0, max(0, i + 480000 - len(audio)))) for i in (0, 480000)]
    ref = np.concatenate([extractor(c, sampling_rate=16000, return_tensors="np").input_features[0] for c in chunks], axis=1)
    ref_np = np.concatenate([extractor._np_extract_fbank_features(c[None], "cpu")[0] for c in chunks], axis=1)
    ours = whisper_features(audio)
    assert report("whisper log-mel (34 s, 2 chunks) vs torch path", ours, ref)[1] < 3e-5
    assert report("whisper log-mel (34 s, 2 chunks) vs numpy path", ours, ref_np)[1] < 1e-6


@pytest.fixture(scope="module")
def whisper_pair():
    config = transformers.WhisperConfig(num_mel_bins=80, d_model=16, encoder_layers=4, encoder_attention_heads=2,
                                        encoder_ffn_dim=32, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
                                        max_source_positions=1500)
    ref = transformers.WhisperForConditionalGeneration(config).eval()
    torch_random_init(ref, 11)
    ours = WhisperEncoder(TINY, rngs=nnx.Rngs(0))
    state = {k: v.numpy() for k, v in ref.state_dict().items()}  # model.encoder.*, model.decoder.*, proj_out
    load_params(ours, read_torch_whisper_encoder(from_arrays(state), TINY))
    return ref.model, ours


def test_encoder_hidden_states_match_transformers(whisper_pair):
    ref, ours = whisper_pair
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        states = torch.stack(ref.encoder(mel, output_hidden_states=True).hidden_states, dim=2).numpy()
    out = np.asarray(ours(np.moveaxis(mel.numpy(), 1, 2)))
    assert out.shape == (1, 1500, 5, 16)
    for i in range(5):
        assert report(f"whisper hidden state {i}", out[:, :, i], states[:, :, i])[1] < 1e-5


def reference_windows(states, n_samples, video_frames):
    """Upstream's loop: 4 zero states in front, frame f takes [2f, 2f+10), then zero padding."""
    padded = np.concatenate([np.zeros_like(states[:, :4]), states], axis=1)
    frames = min(video_frames, n_samples // 640)
    clips = [padded[:, 2 * f:2 * f + 10] for f in range(frames)]
    clips += [np.zeros_like(clips[0])] * (video_frames - frames)
    return np.stack(clips, axis=1)


@pytest.mark.parametrize("n_samples, video_frames", [(16000 * 8, 129), (16000 * 2, 129), (16000 * 8, 33)])
def test_frame_windows(n_samples, video_frames):
    states = np.random.default_rng(3).standard_normal((1, 1500, 5, 8)).astype(np.float32)
    out = frame_windows(states, n_samples, video_frames)
    assert out.shape == (1, video_frames, 10, 5, 8)
    np.testing.assert_array_equal(out, reference_windows(states, n_samples, video_frames))


def test_audio_file_to_prompts(whisper_pair, tmp_path):
    import soundfile

    _, ours = whisper_pair
    audio = speech_like(1.0, seed=4)
    soundfile.write(tmp_path / "a.wav", audio[::2], 8000)  # 8 kHz file: resampled to 16 kHz on load
    loaded = load_audio(tmp_path / "a.wav")
    assert abs(len(loaded) - 16000) <= 2
    prompts = encode_audio(ours, loaded, 33)
    assert prompts.shape == (1, 33, 10, 5, 16)
    assert np.abs(prompts[0, :25]).max() > 0 and not prompts[0, 25:].any()  # 1 s of audio = 25 frames
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="cannot read audio"):
        load_audio(tmp_path / "bad.wav")


def test_checkpoint_keys_are_checked():
    state = {k: v.numpy() for k, v in transformers.WhisperModel(transformers.WhisperConfig(
        num_mel_bins=80, d_model=16, encoder_layers=3, encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
        decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=1500)).state_dict().items()}
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(15\): layers.3.fc1.bias"):
        read_torch_whisper_encoder(from_arrays(state), TINY)  # 3 layers given, 4 configured
