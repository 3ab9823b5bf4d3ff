"""The shipped motion diffusion checkpoint on real speech: controls measured on rendered frames
(landmarks detected on the decoder's output), seeds, window seams, lips following speech."""

from __future__ import annotations

import numpy as np
import pytest

from core.schemas import RenderControls
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features
from workers.audio.whisper import with_motion_features
from workers.decoder.renderer import DecoderConfig, FaceRenderer
from workers.face.latents import dyn_index
from workers.motion.base import motion_controls
from workers.motion.learned import DiffusionMotion
from workers.quality.tracking import track_landmarks

JAW, PRESS = dyn_index("jaw_open"), dyn_index("lip_press")
RIGHT_IRIS, LEFT_IRIS = 468, 473                   # MediaPipe iris centres (subject's right / left)
EYE_CORNERS = ((33, 133), (362, 263))              # image-left / image-right corner of each eye
MOUTH_CORNERS, LIP_CENTRE = (61, 291), (13, 14)


@pytest.fixture(scope="module")
def generator() -> DiffusionMotion:
    return DiffusionMotion(device="cpu")


def _features(path):
    wave = normalize_loudness(load_audio(path))
    return wave, with_motion_features(compute_features(wave, 16000, 25.0), wave)


@pytest.fixture(scope="module")
def speech(shared_assets):
    return _features(shared_assets / "speech_cmu_arctic_a0009_3s.wav")


def motion_for(generator, audio, source, **kw) -> np.ndarray:
    return generator.generate(audio, source, motion_controls(RenderControls(**kw)))


def rendered_landmarks(face, motion, distance=1.0) -> np.ndarray:
    frames = FaceRenderer(face, DecoderConfig(), distance=distance).render(motion[::3])
    landmarks = track_landmarks(frames, refine=True)
    assert np.isfinite(landmarks).all(), "a face is found on every rendered frame"
    return landmarks


def iris_position(landmarks: np.ndarray) -> np.ndarray:
    """Iris centre along each eye's corner line, 0 at its image-left corner and 1 at its
    image-right corner, (T, 2): looking toward image right raises both."""
    out = []
    for iris, (a, b) in zip((RIGHT_IRIS, LEFT_IRIS), EYE_CORNERS):
        axis = landmarks[:, b, :2] - landmarks[:, a, :2]
        out.append(((landmarks[:, iris, :2] - landmarks[:, a, :2]) * axis).sum(1) / (axis ** 2).sum(1))
    return np.stack(out, 1)


def interocular(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[:, 33, :2] - landmarks[:, 263, :2], axis=1)


def test_gaze_control_moves_the_irises_the_asked_way(generator, speech, aligned_grace):
    _, audio = speech
    source = aligned_grace.model.source_latent
    right = rendered_landmarks(aligned_grace, motion_for(generator, audio, source, gaze=(20.0, 0.0)))
    left = rendered_landmarks(aligned_grace, motion_for(generator, audio, source, gaze=(-20.0, 0.0)))
    shift = iris_position(right).mean(0) - iris_position(left).mean(0)
    assert (shift > 0.06).all(), shift


def test_distance_control_changes_the_face_size(generator, speech, aligned_grace):
    _, audio = speech
    source = aligned_grace.model.source_latent
    near = rendered_landmarks(aligned_grace, motion_for(generator, audio, source, distance=1.25), distance=1.25)
    far = rendered_landmarks(aligned_grace, motion_for(generator, audio, source, distance=0.8), distance=0.8)
    ratio = interocular(near).mean() / interocular(far).mean()
    assert 1.3 < ratio < 1.8          # 1.25 / 0.8 = 1.56


def test_happy_raises_the_mouth_corners(generator, speech, aligned_grace):
    _, audio = speech
    source = aligned_grace.model.source_latent

    def corner_lift(landmarks):
        corners = landmarks[:, MOUTH_CORNERS, 1].mean(1)
        centre = landmarks[:, LIP_CENTRE, 1].mean(1)
        return (centre - corners) / interocular(landmarks)       # image y grows downward

    happy = rendered_landmarks(aligned_grace, motion_for(generator, audio, source, emotion="happy"))
    neutral = rendered_landmarks(aligned_grace, motion_for(generator, audio, source))
    assert np.median(corner_lift(happy)) - np.median(corner_lift(neutral)) > 0.02


def test_same_seed_same_motion_other_seed_other_head_motion(generator, speech, aligned_grace):
    _, audio = speech
    source = aligned_grace.model.source_latent
    a, b = motion_for(generator, audio, source, seed=4), motion_for(generator, audio, source, seed=4)
    c = motion_for(generator, audio, source, seed=5)
    assert np.array_equal(a, b)
    assert np.abs(a[:, :3] - c[:, :3]).mean() > 0.2            # degrees of head rotation


def test_windows_join_without_a_seam(generator, shared_assets, aligned_grace):
    _, audio = _features(shared_assets / "speech_asterisk_esMX_allison_28s_8k.wav")
    motion = motion_for(generator, audio, aligned_grace.model.source_latent)
    assert len(motion) == audio.num_frames
    config = generator.model.config
    stride = config.window - config.overlap
    starts = np.arange(stride, len(motion) - 2, stride)          # first frame of every later window
    velocity = np.abs(np.diff(motion, axis=0))                    # (T-1, 20): frame t -> t+1
    acceleration = np.abs(np.diff(motion, 2, axis=0))             # centred on frame t+1
    scale = velocity.std(0) + 1e-6                                # per channel, over the whole clip
    join = np.concatenate([starts - 1, starts, starts + config.overlap - 1])
    inside = np.setdiff1d(np.arange(len(velocity)), np.concatenate([join, join + 1, join - 1]))
    v_join, v_inside = (velocity[join] / scale).mean(), (velocity[inside] / scale).mean()
    a_join = (acceleration[np.clip(join - 1, 0, len(acceleration) - 1)] / scale).mean()
    a_inside = (acceleration[np.clip(inside - 1, 0, len(acceleration) - 1)] / scale).mean()
    assert v_join <= 1.2 * v_inside, (v_join, v_inside)
    assert a_join <= 1.2 * a_inside, (a_join, a_inside)


def test_lips_follow_real_speech_and_close_in_silence(generator, shared_assets, aligned_grace):
    for name in ("speech_cmu_arctic_a0007_4s.wav", "speech_librivox_austen_7s.wav"):
        _, audio = _features(shared_assets / name)
        motion = motion_for(generator, audio, aligned_grace.model.source_latent)
        jaw = motion[:, JAW]
        assert np.corrcoef(jaw, audio.energy_db)[0, 1] > 0.4, name
        quiet = audio.energy_db < np.percentile(audio.energy_db, 95) - 35
        if quiet.sum() >= 3:
            assert np.median(jaw[quiet]) < 0.1, name
