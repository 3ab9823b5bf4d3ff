"""Model audio rows: what the clip normalisation removes (channel, level, voice) and what it keeps."""

import dataclasses

import numpy as np
import pytest

from workers.audio.cues import CUE_NAMES
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features
from workers.audio.whisper import MOTION_FEATURE_DIM, with_motion_features
from workers.motion.conditioning import (
    ACOUSTIC_DIM,
    AUDIO_DIM,
    BANDS,
    CUES_MODEL_DIM,
    ENERGY,
    FEATURE_RECIPES,
    LOG_PITCH,
    MODEL_AUDIO_DIM,
    NUM_MELS,
    ClipNormalization,
    audio_matrix,
    features_matrix,
    normalize_clip,
    silence_matrix,
    warp_formants,
)


@pytest.fixture(scope="module")
def features(shared_assets):
    wave = normalize_loudness(load_audio(shared_assets / "speech_cmu_arctic_a0007_4s.wav"))
    return with_motion_features(compute_features(wave), wave)


def test_shape_and_cue_columns(features):
    rows = normalize_clip(features_matrix(features))
    assert rows.shape == (features.num_frames, MODEL_AUDIO_DIM) and rows.dtype == np.float32
    assert MODEL_AUDIO_DIM == CUES_MODEL_DIM + MOTION_FEATURE_DIM and set(FEATURE_RECIPES.values()) == {
        MODEL_AUDIO_DIM, CUES_MODEL_DIM}
    cues = rows[:, ACOUSTIC_DIM:CUES_MODEL_DIM]
    assert cues.shape[1] == len(CUE_NAMES) and np.all((cues >= 0) & (cues <= 1))
    loud = cues[:, CUE_NAMES.index("loud")]
    # loud follows the energy: the loudest tenth of frames are loud, the quietest are not
    order = np.argsort(features.energy_db)
    assert loud[order[-len(order) // 10:]].mean() > 0.8 and loud[order[: len(order) // 10]].mean() < 0.1


def test_a_microphone_colouring_and_a_level_change_are_removed(features):
    """A fixed gain per mel band (a different microphone) and 12 dB more level leave the model rows
    of the spectrum, the level and the energy as they were."""
    tilt = np.linspace(-3.0, 3.0, NUM_MELS).astype(np.float32)            # natural-log power gain per band
    coloured = audio_matrix(features.log_mel + tilt + np.log(10 ** 1.2), features.energy_db + 12.0,
                            features.pitch_hz, features.voicing, features.band_energy_db + 12.0,
                            features.whisper_states)
    plain, other = normalize_clip(features_matrix(features)), normalize_clip(coloured)
    np.testing.assert_allclose(other[:, :NUM_MELS + 2], plain[:, :NUM_MELS + 2], atol=1e-3)
    np.testing.assert_allclose(other[:, ACOUSTIC_DIM:], plain[:, ACOUSTIC_DIM:], atol=1e-4)


def test_a_higher_voice_has_the_same_relative_pitch(features):
    higher = audio_matrix(features.log_mel, features.energy_db, features.pitch_hz * 1.6, features.voicing,
                          features.band_energy_db, features.whisper_states)
    plain, other = normalize_clip(features_matrix(features)), normalize_clip(higher)
    np.testing.assert_allclose(other[:, LOG_PITCH], plain[:, LOG_PITCH], atol=1e-4)
    voiced = features.pitch_hz > 0
    assert np.abs(plain[voiced, LOG_PITCH]).mean() < 0.5     # octaves around the speaker's own median


def test_statistics_of_the_speech_heard_so_far(features):
    """Fitted on the first second only, the rows of that second are normalised as well (finite,
    the same columns) as they would be with the whole clip: streaming needs no look-ahead."""
    rows = features_matrix(features)
    early = ClipNormalization.fit(rows[:25]).apply(rows[:25])
    whole = normalize_clip(rows)[:25]
    assert np.isfinite(early).all()
    assert np.median(np.abs(early[:, ENERGY] - whole[:, ENERGY])) < 0.5     # within 10 dB of speech level


def test_whisper_states_pass_through_and_are_required(features):
    """The Whisper columns reach the model rows as computed (no clip normalisation); features
    without them are refused rather than read as zeros."""
    rows = normalize_clip(features_matrix(features))
    np.testing.assert_array_equal(rows[:, CUES_MODEL_DIM:], features.whisper_states)
    with pytest.raises(ValueError, match="Whisper"):
        features_matrix(dataclasses.replace(features, whisper_states=None))
    # Silence padding carries the states of silence, not the speech's.
    silent = silence_matrix(2)[:, ACOUSTIC_DIM:]
    assert np.linalg.norm(silent[0] - features.whisper_states.mean(0)) > 0.1 * np.linalg.norm(silent[0])


def test_silence_and_empty_clips_are_finite():
    assert np.isfinite(normalize_clip(silence_matrix(30))).all()
    empty = ClipNormalization.fit(np.zeros((0, AUDIO_DIM), np.float32))
    assert np.isfinite(empty.apply(silence_matrix(5))).all()
    assert np.isfinite(empty.band_mean).all()


def test_formant_warp_moves_spectral_peaks(features):
    """Scaling formants by 1.15 moves every vowel's spectral peak up the mel axis; 1.0 changes nothing."""
    np.testing.assert_allclose(warp_formants(features.log_mel, 1.0), features.log_mel, atol=1e-5)
    up = warp_formants(features.log_mel, 1.15)
    loud = features.energy_db > np.percentile(features.energy_db, 70)

    def centroid(log_mel):          # power-weighted mean mel band of each loud frame
        power = np.exp(log_mel[loud].astype(np.float64))
        return (power * np.arange(NUM_MELS)).sum(1) / power.sum(1)

    assert np.mean(centroid(up) > centroid(features.log_mel)) > 0.95
    assert np.mean(centroid(warp_formants(features.log_mel, 0.87)) < centroid(features.log_mel)) > 0.95
    assert BANDS.stop == ACOUSTIC_DIM and AUDIO_DIM == ACOUSTIC_DIM + MOTION_FEATURE_DIM
