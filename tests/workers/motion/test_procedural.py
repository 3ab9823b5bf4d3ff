"""Procedural motion on real speech features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import find_peaks

from core.schemas import RenderControls
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features
from workers.face.latents import (
    DYNAMICS,
    MOTION_DIM,
    MOTION_NAMES,
    dyn_index,
)
from workers.motion.base import MotionControls, motion_controls
from workers.motion.procedural import ProceduralMotion

JAW = dyn_index("jaw_open")
BLINK = dyn_index("blink_left")
SOURCE = np.zeros(MOTION_DIM, np.float32)
SOURCE[[0, 1, 5]] = [-0.3, 9.2, -1.29]            # Grace Hopper's pose
SOURCE[18:20] = [-0.3, 11.7]


def features(path):
    wave = normalize_loudness(load_audio(path))
    return wave, compute_features(wave, 16000, 25.0)


@pytest.fixture(scope="module")
def short(shared_assets):
    return features(shared_assets / "speech_cmu_arctic_a0009_3s.wav")


@pytest.fixture(scope="module")
def long_clip(shared_assets):
    return features(shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav")[1]


def controls(**kw) -> MotionControls:
    return motion_controls(RenderControls(**kw))


def generate(audio, **kw) -> np.ndarray:
    return ProceduralMotion().generate(audio, SOURCE, controls(**kw))


def test_shape_and_dtype(short):
    _, audio = short
    motion = generate(audio)
    assert motion.shape == (audio.num_frames, 20) and motion.dtype == np.float32
    assert np.isfinite(motion).all()


def test_jaw_follows_speech_and_rests_in_silence(short):
    """The arctic clip has ~0.3 s of silence at each end: the jaw stays under 0.05 there and
    averages several times that while speaking, reaching over 0.25 at its peaks."""
    wave, audio = short
    jaw = generate(audio)[:, JAW]
    level = audio.energy_db
    speech = level > np.percentile(level, 95) - 20
    first, last = np.flatnonzero(speech)[[0, -1]]
    assert first >= 4 and last <= len(jaw) - 5, "expected leading and trailing silence in the clip"
    lead, tail = jaw[: first - 2], jaw[last + 3:]
    assert lead.max() < 0.05 and tail.max() < 0.05, (lead.max(), tail.max())
    assert jaw[first:last + 1].mean() > 0.1 and jaw.max() > 0.25
    assert jaw.min() >= 0.0


def test_blink_rate_on_28_s_of_speech(long_clip):
    """15-20 blinks/min +-50 %: 7 to 15 blinks in 28 s, for several seeds; each blink closes
    the lids fully (peak ~1) and both eyes blink together."""
    minutes = long_clip.duration_s / 60
    for seed in range(3):
        motion = generate(long_clip, seed=seed)
        left = motion[:, BLINK]
        np.testing.assert_array_equal(left, motion[:, dyn_index("blink_right")])
        peaks, _ = find_peaks(left, height=0.8, distance=5)
        rate = len(peaks) / minutes
        assert 7.5 <= rate <= 30, (seed, len(peaks), rate)
        assert left.max() <= 1.0 + 1e-6 and left.min() >= -1e-6


def test_seed_controls_head_motion(short):
    _, audio = short
    a, b, c = generate(audio, seed=1), generate(audio, seed=1), generate(audio, seed=2)
    np.testing.assert_array_equal(a, b)
    head = slice(0, 3)
    assert np.abs(a[:, head] - c[:, head]).mean() > 0.2
    # the mouth is driven by the audio alone, not the seed
    np.testing.assert_array_equal(a[:, JAW], c[:, JAW])
    # head motion is a small drift around the photo's pose
    assert np.abs(a[:, 0] - SOURCE[0]).max() < 12 and np.abs(a[:, 1] - SOURCE[1]).max() < 12
    assert a[:, 0].std() > 0.1


def test_gaze_control_sets_the_gaze(short):
    _, audio = short
    free = generate(audio)[:, 18:20]
    fixed = generate(audio, gaze=(15.0, -5.0))[:, 18:20]
    # saccades of a few degrees around the asked direction
    np.testing.assert_allclose(fixed.mean(0), [15.0, -5.0], atol=3.0)
    assert np.abs(fixed - [15.0, -5.0]).max() < 8.0
    np.testing.assert_allclose(fixed - free, np.broadcast_to([15.0 + 0.3, -5.0 - 11.7], fixed.shape), atol=1e-4)


def test_distance_scales_the_head(short):
    _, audio = short
    near = generate(audio, distance=1.5)[:, 5]
    same = generate(audio, distance=1.0)[:, 5]
    np.testing.assert_allclose(near - same, np.log(1.5), atol=1e-5)
    np.testing.assert_allclose(same, SOURCE[5], atol=1e-6)


def test_emotion_happy_raises_the_smile(short):
    _, audio = short
    neutral = generate(audio)
    happy = generate(audio, emotion="happy")
    for name in ("smile_left", "smile_right"):
        np.testing.assert_allclose(happy[:, dyn_index(name)] - neutral[:, dyn_index(name)], 0.6, atol=1e-5)
    # the mouth movement itself is unchanged
    np.testing.assert_array_equal(happy[:, JAW], neutral[:, JAW])
    assert MOTION_NAMES[dyn_index("smile_left")] == "smile_left" and len(DYNAMICS) == 12
