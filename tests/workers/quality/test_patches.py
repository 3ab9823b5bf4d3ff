"""workers.quality.patches: mouth and eye patches between tracked frames, calibrated per clip
on the tracked frames' values (drawn faces whose true opening and eye ratio are known on every
frame, and series with a known answer)."""

from __future__ import annotations

import cv2
import numpy as np

from workers.quality.measure import BLINK_EAR_FRACTION, _pearson, blink_rate
from workers.quality.patches import MIN_CALIBRATION_FRAMES, FacePatches, calibrate
from workers.quality.qc import BATCH_STRIDE


def _drawn_face(opening: float, eyes: float, rng: np.random.Generator) -> np.ndarray:
    """A 256 px RGB face-like frame: skin with a mouth (outer corners at x 98 / 158, y 190)
    parted by ``opening`` mouth widths, and two eyes (outer corners x 60 / 196, y 110) open by
    the fraction ``eyes``, on skin noise that changes every frame."""
    frame = np.clip(rng.normal(0, 4, (256, 256, 3)) + (200, 160, 140), 0, 255).astype(np.uint8)
    dy = int(rng.integers(-1, 2))                     # the head bobs a pixel
    cv2.ellipse(frame, (128, 190 + dy), (32, 10 + int(15 * opening)), 0, 0, 360, (170, 80, 80), -1)
    half = int(round(30 * opening))
    if half > 0:
        cv2.ellipse(frame, (128, 190 + dy), (27, half), 0, 0, 360, (50, 15, 20), -1)
    else:
        cv2.line(frame, (100, 190 + dy), (156, 190 + dy), (110, 40, 40), 1)
    for cx in (80, 176):
        lid = max(int(round(9 * eyes)), 0)
        if lid > 0:
            mask = np.zeros((256, 256), np.uint8)
            cv2.ellipse(mask, (cx, 110 + dy), (20, lid), 0, 0, 360, 1, -1)
            eye = np.full_like(frame, 235)
            cv2.circle(eye, (cx, 110 + dy), 7, (45, 35, 30), -1)
            frame[mask > 0] = eye[mask > 0]
        cv2.ellipse(frame, (cx, 110 + dy), (21, max(lid, 1)), 0, 180, 360, (30, 20, 20), 2)     # lashes
    return frame


def test_drawn_blinks_and_mouth_are_recovered_from_patches():
    """Patches + calibration on their own (no Face Mesh: the test knows the truth): a face
    drawn with a speech-like mouth and six blinks of 4 frames, the true values given on every
    8th frame only, as Face Mesh would. Three blinks touch a tracked frame, three fall between;
    all six come back, and the opening between tracked frames follows the drawn one."""
    rng = np.random.default_rng(0)
    n, stride, fps = 160, BATCH_STRIDE, 25.0
    t = np.arange(n)
    opening = 0.3 * (0.5 + 0.5 * np.sin(2 * np.pi * t / 7.3 + 0.8 * np.sin(t / 5.0))) ** 2
    eyes = np.ones(n)
    for start in (10, 37, 64, 91, 118, 145):
        eyes[start:start + 4] = (0.5, 0.05, 0.05, 0.5)
    ear = 0.3 * eyes                                   # eye aspect ratio: lid gap / eye width
    landmarks = np.full((478, 3), np.nan)
    landmarks[[61, 291, 33, 263], :2] = ((98, 190), (158, 190), (60, 110), (196, 110))

    patches = FacePatches()
    for i in range(n):
        if i % stride == 0:
            patches.locate(landmarks)
        patches.add(_drawn_face(opening[i], eyes[i], rng))
    anchors = np.arange(0, n, stride)
    closed = anchors[np.argsort(opening[anchors])[:len(anchors) // 5]]
    mouth, mouth_r = calibrate(patches.mouth_features(closed), anchors, opening[anchors])
    eye, _ = calibrate(patches.eye_features(), anchors, ear[anchors])

    skipped = np.ones(n, bool)
    skipped[anchors] = False
    assert _pearson(mouth[skipped], opening[skipped]) > 0.95 and mouth_r > 0.95
    assert np.array_equal(mouth[anchors], opening[anchors])            # tracked frames keep their value
    blinks, _ = blink_rate(eye, fps, BLINK_EAR_FRACTION)
    assert blinks == 6
    assert blink_rate(np.interp(t, anchors, ear[anchors]), fps, BLINK_EAR_FRACTION)[0] < 6   # what anchors alone see


def test_calibrate_needs_enough_tracked_frames():
    rng = np.random.default_rng(1)
    truth = np.sin(np.arange(80) / 3.0)
    features = np.c_[truth + 0.05 * rng.normal(size=80), rng.normal(size=80)]
    features[5] = np.nan                               # a frame without patches
    many = np.arange(0, 80, 8)
    series, fit_r = calibrate(features, many, truth[many])
    assert fit_r > 0.95 and np.isnan(series[5]) and np.isfinite(np.delete(series, 5)).all()
    few = np.arange(0, 80, 8)[:MIN_CALIBRATION_FRAMES - 1]
    series, fit_r = calibrate(features, few, truth[few])
    assert np.isnan(fit_r)
    np.testing.assert_allclose(series[6:40], np.interp(np.arange(6, 40), few, truth[few]))
    values = truth[many].copy()
    values[:] = np.nan                                 # no face on any tracked frame
    assert np.isnan(calibrate(features, many, values)[0]).all()
