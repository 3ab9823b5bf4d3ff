"""Dubbing one frame: only the mouth and jaw move, pixels outside the lower face stay the frame's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workers.face import topology as topo
from workers.take.compose import JAW_INDEX, FrameTargets, dub_frame
from workers.take.reader import probe_take, read_take_frames


@pytest.fixture(scope="module")
def tracked(short_take, short_track):
    track, _ = short_track
    frames = read_take_frames(short_take, probe_take(short_take, 600), np.arange(track.num_frames))
    return track, frames


def _lip_gap(landmarks: np.ndarray) -> float:
    upper, lower = topo.LIP_CENTER_INNER
    return float(landmarks[lower, 1] - landmarks[upper, 1])


@pytest.mark.parametrize("i", [0, 18])       # the mouth open (teeth showing), and closed
def test_the_frames_own_motion_gives_back_the_frame(tracked, i):
    track, frames = tracked
    out = dub_frame(frames[i], FrameTargets(track.landmarks[i], track.own[i], track.own[i]), track.crop_size)
    change = np.abs(out.astype(int) - frames[i]).max(-1)
    # The decoder paints the interior of an open mouth itself (teeth, tongue, shadow), also
    # where it does not move; outside it the frame comes back within resampling noise.
    interior = np.zeros(change.shape, np.uint8)
    cv2.fillPoly(interior, [np.round(track.landmarks[i][list(topo.inner_mouth_polygon()), :2]).astype(np.int32)], 1)
    interior = cv2.dilate(interior, np.ones((5, 5), np.uint8)) > 0
    assert change[~interior].max() <= 20 and (change[~interior] > 3).mean() < 0.002


def test_a_new_mouth_moves_the_mouth_and_nothing_outside_the_lower_face(tracked, detector):
    track, frames = tracked
    i = int(np.argmin(track.own[:, JAW_INDEX]))          # the take's most closed mouth
    target = track.own[i].copy()
    target[JAW_INDEX] += 0.6
    out = dub_frame(frames[i], FrameTargets(track.landmarks[i], track.own[i], target), track.crop_size)
    before, after = detector.detect(frames[i])[0].landmarks, detector.detect(out)[0].landmarks
    assert _lip_gap(after) > _lip_gap(before) + 4.0       # the mouth opened (pixels, a ~120 px face)
    # everything above the nose tip and beyond the face outline is the frame's own, exactly
    changed = np.any(out != frames[i], axis=-1)
    ys, xs = np.nonzero(changed)
    assert ys.min() > before[[33, 263], 1].max()          # nothing changes at or above the eyes
    oval = before[list(topo.FACE_OVAL), :2]
    width = oval[:, 0].max() - oval[:, 0].min()
    assert xs.min() > oval[:, 0].min() - 0.2 * width and xs.max() < oval[:, 0].max() + 0.2 * width
    assert changed.mean() < 0.05
