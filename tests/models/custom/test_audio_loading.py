"""Audio that cannot be read is refused with what the decoders said (audioread's own errors
are empty: the message used to read "cannot read audio X: ;")."""

import numpy as np
import pytest
import soundfile

from hyv_jax.models.custom.audio_prompts import load_audio


@pytest.mark.parametrize("content", [b"", b"hello", b"\xff\xfb" + bytes(200)])
def test_unreadable_audio_says_what_failed(tmp_path, content):
    path = tmp_path / "speech.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith(f"cannot read audio {path}: Error opening") and "the fallback decoder failed too" in message
    assert ": ;" not in message and message.endswith("pass a wav/flac/mp3 file that librosa can decode")


def test_missing_audio_and_audio_at_another_rate(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_audio(tmp_path / "none.wav")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        load_audio(tmp_path)
    soundfile.write(tmp_path / "a.wav", np.zeros(8000, np.float32), 8000)
    assert load_audio(tmp_path / "a.wav").shape == (16000,)


def test_audio_shorter_than_a_frame_is_refused_and_partial_audio_counted():
    from hyv_jax.models.custom.audio_prompts import audio_frames

    with pytest.raises(ValueError, match=r"speech.wav lasts 6 ms, less than one video frame \(40 ms at 25 fps\).*0.36 s of speech for 9 frames"):
        audio_frames(96, 9, "speech.wav")
    assert audio_frames(640 * 5 + 10, 9) == 5 and audio_frames(16000, 9) == 9
