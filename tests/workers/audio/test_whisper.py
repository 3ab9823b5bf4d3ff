"""The PyTorch Whisper encoder port against ctranslate2's own encoder, on real speech."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from workers.audio import whisper
from workers.audio.decode import load_audio


@pytest.fixture(scope="module")
def librivox_wave(shared_assets):
    return load_audio(shared_assets / "speech_librivox_austen_7s.wav", 16000, 60)


def test_port_matches_ctranslate2_encoder_on_real_speech(librivox_wave):
    import ctranslate2

    encoder = whisper.load_encoder("tiny.en")
    assert (encoder.width, encoder.num_layers) == (384, 4)
    windows, num_mel_frames = whisper.log_mel_windows(librivox_wave)
    assert windows.shape == (1, 80, 3000) and num_mel_frames == len(librivox_wave) // 160 + 1
    ours = encoder.encode(windows)
    reference = ctranslate2.models.Whisper("tiny.en", files=dict(whisper.model_files("tiny.en")),
                                           compute_type="float32", intra_threads=2)
    theirs = np.array(reference.encode(ctranslate2.StorageView.from_array(windows)))
    assert ours.shape == theirs.shape == (1, 1500, 384)
    speech_rows = slice(0, (num_mel_frames + 1) // 2)
    error = np.linalg.norm(ours[0, speech_rows] - theirs[0, speech_rows]) / np.linalg.norm(theirs[0, speech_rows])
    assert error < 1e-4, error
    assert np.abs(ours - theirs).max() < 1e-3


def test_frame_features_are_on_the_video_grid_and_follow_the_speech(librivox_wave):
    encoder = whisper.load_encoder("tiny.en")
    features = encoder.frame_features(librivox_wave, fps=25.0, output_layer=2)
    assert features.shape == (round(len(librivox_wave) / 16000 * 25), 384) and features.dtype == np.float32
    assert np.isfinite(features).all()
    # Consecutive frames of speech differ; the features are not a constant.
    assert np.median(np.linalg.norm(np.diff(features, axis=0), axis=1)) > 0.05 * np.median(np.linalg.norm(features, axis=1))
    by_layer = encoder.frame_features_by_layer(librivox_wave, 25.0)
    assert len(by_layer) == encoder.num_layers + 1 and np.allclose(by_layer[2], features, atol=1e-5)
    with pytest.raises(ValueError):
        encoder.encode(np.zeros((1, 80, 3000), np.float32), output_layer=9)


def test_a_model_file_that_does_not_match_its_pinned_sha256_is_refused(monkeypatch):
    tampered = dataclasses.replace(whisper.PACKAGES["tiny.en"], sha256="0" * 64)
    monkeypatch.setitem(whisper.PACKAGES, "tiny.en", tampered)
    with pytest.raises(whisper.ModelUnavailableError, match="sha256"):
        whisper.model_files.__wrapped__("tiny.en")
    with pytest.raises(whisper.ModelUnavailableError, match="unknown Whisper model"):
        whisper.model_files.__wrapped__("large")


def test_base_model_joins_its_two_parts():
    spec, weights = whisper.read_ctranslate2(whisper.model_files("base")["model.bin"], "encoder/")
    assert spec == "WhisperSpec"
    assert weights["encoder/position_encodings/encodings"].shape == (1500, 512)
    assert sum(name.endswith("self_attention/linear_0/weight") for name in weights) == 6
