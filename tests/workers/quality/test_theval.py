"""THEval-style naturalness on the real webcam clip's landmarks, and on the same face held still."""

from __future__ import annotations

import numpy as np
import pytest

from workers.quality.geometry import head_pose_angles
from workers.quality.theval import _long_pauses, naturalness
from workers.quality.tracking import track_video


@pytest.fixture(scope="module")
def tracked(webcam):
    """Landmarks of every 5th frame of the webcam clip (30 s: the man turns and tilts his head)."""
    frames, fps = webcam
    landmarks = track_video(frames[::5])
    return landmarks, head_pose_angles(landmarks), fps / 5


def test_a_real_head_moves_and_a_frozen_one_does_not(tracked):
    landmarks, pose, fps = tracked
    moving = naturalness(landmarks, pose, fps)
    assert moving["head_translation_pct_iod"] > 3.0          # the face centre moves by several % IOD
    assert moving["head_rotation_std_deg"] > 0.5
    assert moving["brow_dynamics"] > 0 and moving["lip_dynamics"] > 0
    assert np.isnan(moving["pause_lip_mad"]) and np.isnan(moving["brow_prosody_r"])   # no audio given
    frozen_landmarks = np.repeat(landmarks[:1], len(landmarks), axis=0)
    frozen = naturalness(frozen_landmarks, np.repeat(pose[:1], len(pose), axis=0), fps)
    for key in ("head_translation_pct_iod", "head_rotation_std_deg", "head_motion_dynamics", "brow_dynamics",
                "lip_dynamics"):
        assert frozen[key] == pytest.approx(0.0, abs=1e-9), key
    # Shifting every frame by the same amount moves nothing relative to the clip.
    shifted = naturalness(landmarks + np.array([7.0, -3.0, 0.0]), pose, fps)
    assert shifted["head_translation_pct_iod"] == pytest.approx(moving["head_translation_pct_iod"], rel=1e-6)


def test_the_pause_measure_reads_the_lips_only_in_long_pauses(tracked):
    landmarks, pose, fps = tracked
    speech = np.ones(len(landmarks), bool)
    speech[20:40] = False            # a 4 s pause (5 fps)
    speech[60:61] = False            # 0.2 s: too short to count
    assert _long_pauses(speech, fps).sum() == 20
    with_pause = naturalness(landmarks, pose, fps, speech=speech)
    assert with_pause["pause_lip_mad"] >= 0.0 and np.isfinite(with_pause["pause_lip_mad"])
    # Lips held still through the pause: no movement left to measure.
    still = landmarks.copy()
    still[20:40] = landmarks[20]
    assert naturalness(still, pose, fps, speech=speech)["pause_lip_mad"] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(naturalness(landmarks, pose, fps, speech=np.ones(len(landmarks), bool))["pause_lip_mad"])
