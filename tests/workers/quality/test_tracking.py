"""workers.quality.tracking: the pooled Face Mesh tracker on real webcam frames."""

from __future__ import annotations

import numpy as np

from workers.quality.frames import fit_frame
from workers.quality.tracking import FaceTracker, acquire_tracker, release_tracker


def test_reset_tracker_tracks_like_a_new_one(webcam):
    """A pooled tracker, reset after one video, gives the next video exactly a new tracker's
    landmarks (the batch reuses graphs across renders)."""
    frames, _ = webcam
    first = [fit_frame(f, (256, 192)) for f in frames[400:440:8]]
    second = [fit_frame(f, (256, 192)) for f in frames[100:140:8]]
    with FaceTracker() as fresh:
        expected = np.stack([fresh(f) for f in second])
    tracker = acquire_tracker()
    for frame in first:
        tracker(frame)
    release_tracker(tracker)
    again = acquire_tracker()
    try:
        got = np.stack([again(f) for f in second])
    finally:
        release_tracker(again)
    np.testing.assert_array_equal(got, expected)
