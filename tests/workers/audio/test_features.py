"""compute_features on real speech and on signals whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from workers.audio.decode import load_audio
from workers.audio.features import (
    BAND_EDGES_HZ,
    AudioFeatures,
    compute_features,
    hz_to_slaney_mel,
    slaney_mel_filterbank,
    slaney_mel_to_hz,
)

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def male_speech(shared_assets) -> np.ndarray:
    return load_audio(shared_assets / "speech_cmu_arctic_a0007_4s.wav")


@pytest.fixture(scope="module")
def female_speech(shared_assets) -> np.ndarray:
    return load_audio(shared_assets / "speech_cmu_arctic_a0009_3s.wav")


def sawtooth(frequency_hz: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    times = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * scipy.signal.sawtooth(2 * np.pi * frequency_hz * times)).astype(np.float32)


def voiced_median_hz(features: AudioFeatures) -> float:
    voiced = features.pitch_hz[features.pitch_hz > 0]
    assert voiced.size > 5, "expected voiced frames"
    return float(np.median(voiced))


@pytest.mark.parametrize("fps", [25.0, 30.0, 24.0, 50.0, 29.97])
def test_shapes_dtypes_and_frame_count(male_speech, fps):
    features = compute_features(male_speech, SAMPLE_RATE, fps=fps)
    expected_frames = round(len(male_speech) / SAMPLE_RATE * fps)
    assert features.num_frames == expected_frames
    assert features.fps == fps and features.sample_rate == SAMPLE_RATE
    assert features.duration_s == pytest.approx(4.0, abs=1e-6)
    assert features.log_mel.shape == (expected_frames, 80)
    assert features.energy_db.shape == features.pitch_hz.shape == features.voicing.shape == (expected_frames,)
    assert features.band_energy_db.shape == (expected_frames, 4)
    for array in (features.log_mel, features.energy_db, features.pitch_hz, features.voicing, features.band_energy_db):
        assert array.dtype == np.float32 and np.all(np.isfinite(array))
    assert features.voicing.min() >= 0 and features.voicing.max() <= 1
    assert features.energy_db.min() >= -80 and features.band_energy_db.min() >= -80


def test_fps_above_hop_rate_interpolates(female_speech):
    features = compute_features(female_speech, SAMPLE_RATE, fps=120.0)
    assert features.num_frames == round(len(female_speech) / SAMPLE_RATE * 120)
    assert np.all(np.isfinite(features.log_mel))
    # Neighbouring 8.3 ms frames of speech change smoothly, not with gaps of floor values.
    assert np.median(np.abs(np.diff(features.energy_db))) < 3.0


@pytest.mark.parametrize("num_samples", [0, 1, 100, 639])
def test_audio_shorter_than_one_frame_gives_one_frame(num_samples):
    features = compute_features(np.full(num_samples, 0.1, np.float32), SAMPLE_RATE, fps=25.0)
    assert features.num_frames == 1
    assert features.log_mel.shape == (1, 80)
    expected_db = -80.0 if num_samples == 0 else 20 * np.log10(0.1)
    assert features.energy_db[0] == pytest.approx(expected_db, abs=0.01)


def test_speech_louder_than_leading_silence(male_speech):
    features = compute_features(male_speech, SAMPLE_RATE, fps=25.0)
    leading_silence_db = np.max(features.energy_db[:3])  # the first 120 ms are a pause
    speech_db = np.percentile(features.energy_db, 90)
    assert speech_db > leading_silence_db + 20
    # The same holds in every band that carries speech energy, and in the mel spectrum.
    assert np.all(np.percentile(features.band_energy_db, 90, axis=0) > features.band_energy_db[:3].max(axis=0) + 10)
    assert np.percentile(features.log_mel.mean(axis=1), 90) > features.log_mel[:3].mean(axis=1).max() + 2


def test_energy_matches_sample_rms():
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    features = compute_features(tone, SAMPLE_RATE, fps=25.0)
    # A sine of amplitude 0.5 has RMS 0.5 / sqrt(2): -9.03 dBFS.
    assert np.allclose(features.energy_db, 20 * np.log10(0.5 / np.sqrt(2)), atol=0.05)
    # Bands split the same power: their sum is the frame's mean square (Parseval).
    band_total_db = 10 * np.log10(np.sum(10 ** (features.band_energy_db[2:-2] / 10), axis=1))
    assert np.allclose(band_total_db, features.energy_db[2:-2], atol=0.3)


@pytest.mark.parametrize("tone_hz, band_index", [(150.0, 0), (700.0, 1), (1800.0, 2), (4000.0, 3)])
def test_tone_lands_in_its_band_and_mel_bin(tone_hz, band_index):
    tone = (0.3 * np.sin(2 * np.pi * tone_hz * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    features = compute_features(tone, SAMPLE_RATE, fps=25.0)
    assert BAND_EDGES_HZ[band_index][0] <= tone_hz < BAND_EDGES_HZ[band_index][1]
    middle = features.band_energy_db[5:-5]
    assert np.all(np.argmax(middle, axis=1) == band_index)
    mel_edges_hz = slaney_mel_to_hz(np.linspace(0, hz_to_slaney_mel(8000.0), 82))
    loudest_mel_bin = int(np.bincount(np.argmax(features.log_mel[5:-5], axis=1)).argmax())
    assert mel_edges_hz[loudest_mel_bin] <= tone_hz <= mel_edges_hz[loudest_mel_bin + 2]


def test_mel_filterbank_is_slaney_style():
    filters = slaney_mel_filterbank(SAMPLE_RATE, 512)
    assert filters.shape == (80, 257)
    assert np.all(filters >= 0)
    # Linear below 1 kHz: 1000 Hz is mel 15; the mapping round-trips.
    assert hz_to_slaney_mel(1000.0) == pytest.approx(15.0)
    frequencies = np.array([0.0, 300.0, 1000.0, 2500.0, 8000.0])
    assert np.allclose(slaney_mel_to_hz(hz_to_slaney_mel(frequencies)), frequencies)
    # Area normalization: wide high filters have lower peaks than narrow low ones.
    assert filters[5].max() > filters[70].max()


@pytest.mark.parametrize("frequency_hz", [75.0, 110.0, 150.0, 220.0, 330.0])
def test_sawtooth_pitch_within_5_percent(frequency_hz):
    features = compute_features(sawtooth(frequency_hz, 1.5), SAMPLE_RATE, fps=25.0)
    assert abs(voiced_median_hz(features) - frequency_hz) / frequency_hz < 0.05
    assert np.mean(features.pitch_hz > 0) > 0.9
    assert np.median(features.voicing) > 0.8


def test_pulse_train_pitch_150hz():
    pulses = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
    pulses[:: SAMPLE_RATE // 150 + 0] = 0.8  # period 106 samples: 150.9 Hz
    true_hz = SAMPLE_RATE / (SAMPLE_RATE // 150)
    features = compute_features(pulses, SAMPLE_RATE, fps=25.0)
    assert abs(voiced_median_hz(features) - true_hz) / true_hz < 0.05


def test_noise_and_silence_are_unvoiced():
    noise = (0.1 * np.random.default_rng(1).standard_normal(SAMPLE_RATE * 2)).astype(np.float32)
    features = compute_features(noise, SAMPLE_RATE, fps=25.0)
    assert np.mean(features.pitch_hz > 0) < 0.1
    assert np.median(features.voicing) < 0.6
    silence = compute_features(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE, fps=25.0)
    assert np.all(silence.pitch_hz == 0) and np.all(silence.voicing == 0)
    assert np.all(silence.energy_db == -80)


def test_speech_pitch_medians_are_plausible(male_speech, female_speech):
    male_hz = voiced_median_hz(compute_features(male_speech, SAMPLE_RATE, fps=25.0))
    female_hz = voiced_median_hz(compute_features(female_speech, SAMPLE_RATE, fps=25.0))
    assert 130 * 0.75 <= male_hz <= 130 * 1.25
    assert 190 * 0.75 <= female_hz <= 190 * 1.25
    # Voiced frames are a good share of read speech, and periodicity follows voicing.
    features = compute_features(male_speech, SAMPLE_RATE, fps=25.0)
    voiced = features.pitch_hz > 0
    assert 0.2 < voiced.mean() < 0.9
    assert features.voicing[voiced].mean() > features.voicing[~voiced].mean() + 0.2


def test_same_features_at_other_fps_agree_in_time(male_speech):
    at_25 = compute_features(male_speech, SAMPLE_RATE, fps=25.0)
    at_50 = compute_features(male_speech, SAMPLE_RATE, fps=50.0)
    # Two 20 ms frames hold the same samples as one 40 ms frame: their mean power matches.
    pair_power = (10 ** (at_50.energy_db[0::2] / 10) + 10 ** (at_50.energy_db[1::2] / 10)) / 2
    assert np.allclose(10 * np.log10(pair_power), at_25.energy_db, atol=0.01)


def test_28s_asset_gives_one_row_per_video_frame(shared_assets):
    # Its speed is a figure in bench/render.py (the audio stage's seconds), not a timed assert.
    speech = load_audio(shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav")
    features = compute_features(speech, SAMPLE_RATE, fps=25.0)
    assert features.num_frames == round(len(speech) / SAMPLE_RATE * 25)
    assert features.log_mel.shape == (features.num_frames, 80) and np.all(np.isfinite(features.log_mel))
