"""Naturalness measures in the manner of THEval (Quignon et al., CVPR 2026; github.com/Newbyl/THEval):
how much the head, the eyebrows and the lips move, and how still the mouth is in pauses.

THEval's own scripts read the head pose with FaceXFormer and the face box with RetinaFace;
here everything comes from the Face Mesh landmarks the QC already tracks, so the head
measures follow THEval's formulas on our pose and face centre, and the translation is in
interocular distances (a crop that fills the frame and a webcam frame with a small face then
read alike; THEval's pixels depend on the framing). Per clip:

* ``head_translation_pct_iod``: sqrt(mean of the variances of the face centre's x and y), the
  centre being the mean of the 468 mesh points, in % of the median interocular distance;
* ``head_rotation_std_deg``: mean over yaw, pitch and roll of their standard deviation;
* ``head_motion_dynamics``: THEval's combination sqrt(mean angle std x mean variance of the
  per-frame angle change + mean translation variance), angles in degrees, translation in % IOD;
* ``brow_dynamics``: THEval's eyebrow dynamics, the mean absolute change from one tracked
  frame to the next of each brow's distance to its eye (both centroids, divided by the
  distance between the eye centres);
* ``brow_prosody_r``: Pearson r (best lag within +-5 frames) of the mean brow height against
  the audio envelope: brows that rise with stressed speech;
* ``lip_dynamics``: THEval's lip dynamics, the mean over every pair of the 40 lip points of the
  variance over time of their distance (divided by the eye-corner distance 33-263), x 1000;
* ``pause_lip_mad``: THEval's silent lip stability, in frames inside silero-vad silences of
  at least 0.3 s: the inner-lip gap (8 upper / lower pairs, divided by the eye-corner
  distance), its median absolute deviation from its mean. Real mouths keep small movements
  in pauses; a frozen mouth reads 0.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from workers.quality.measure import best_correlation, lagged_correlations

MESH_POINTS = 468
RIGHT_EYE_CORNER, LEFT_EYE_CORNER = 33, 263
RIGHT_BROW = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
LEFT_BROW = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
RIGHT_EYE = (7, 33, 133, 144, 145, 153, 154, 155, 157, 158, 159, 160, 161, 163, 173, 246)
LEFT_EYE = (249, 263, 362, 373, 374, 380, 381, 382, 384, 385, 386, 387, 388, 390, 398, 466)
# Face Mesh's lip contour (outer and inner): the 40 points of THEval's lip dynamics.
LIPS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
        267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
INNER_UPPER = (191, 80, 81, 82, 13, 312, 311, 310)
INNER_LOWER = (95, 88, 178, 87, 14, 317, 402, 318)
MIN_PAUSE_SECONDS = 0.3
BROW_MAX_LAG = 5


def naturalness(landmarks: np.ndarray, pose: np.ndarray, fps: float, stride: int = 1,
                envelope_db: np.ndarray | None = None, speech: np.ndarray | None = None) -> dict[str, float]:
    """The measures of the module docstring.

    Args:
        landmarks: (T, 478, 3) pixels, NaN rows on untracked frames.
        pose: (T, 3) yaw, pitch, roll degrees (``geometry.head_pose_angles``).
        fps: video frame rate.
        stride: frames between tracked frames (head and brow changes are per tracked step).
        envelope_db: (T,) audio envelope, or None (no brow-prosody r).
        speech: (T,) bool speech per frame from the VAD, or None (no pause measure).

    Returns:
        {name: value}; NaN where the clip has too few tracked frames (or no audio / no pause).
    """
    nan = float("nan")
    points = np.asarray(landmarks, dtype=np.float64)[::stride]
    angles = np.asarray(pose, dtype=np.float64)[::stride]
    ok = np.isfinite(points[:, :MESH_POINTS].reshape(len(points), -1)).all(axis=1) & np.isfinite(angles).all(axis=1)
    out = dict.fromkeys(("head_translation_pct_iod", "head_rotation_std_deg", "head_motion_dynamics", "brow_dynamics",
                         "brow_prosody_r", "lip_dynamics", "pause_lip_mad"), nan)
    if ok.sum() < 3:
        return out
    tracked, angles = points[ok], angles[ok]
    corners = np.linalg.norm(tracked[:, RIGHT_EYE_CORNER, :2] - tracked[:, LEFT_EYE_CORNER, :2], axis=1)
    iod = float(np.median(corners))
    centre = tracked[:, :MESH_POINTS, :2].mean(axis=1) / iod * 100.0
    translation_variance = float(np.mean(centre.var(axis=0)))
    rotation_std = float(np.mean(angles.std(axis=0)))
    change_variance = float(np.mean(np.diff(angles, axis=0).var(axis=0)))
    out.update(head_translation_pct_iod=float(np.sqrt(translation_variance)), head_rotation_std_deg=rotation_std,
               head_motion_dynamics=float(np.sqrt(rotation_std * change_variance + translation_variance)))

    eye_centres = [tracked[:, list(eye), :2].mean(axis=1) for eye in (RIGHT_EYE, LEFT_EYE)]
    eye_distance = np.linalg.norm(eye_centres[0] - eye_centres[1], axis=1)
    brows = [np.linalg.norm(tracked[:, list(brow), :2].mean(axis=1) - eye, axis=1) / eye_distance
             for brow, eye in zip((RIGHT_BROW, LEFT_BROW), eye_centres)]
    out["brow_dynamics"] = float(np.mean([np.abs(np.diff(brow)).mean() for brow in brows]))
    if envelope_db is not None and stride == 1:
        height = np.full(len(points), nan)
        height[ok] = (brows[0] + brows[1]) / 2.0
        out["brow_prosody_r"] = best_correlation(lagged_correlations(height, np.asarray(envelope_db, np.float64),
                                                                    BROW_MAX_LAG))[0]

    lips = tracked[:, list(LIPS), :2]
    pairs = np.array(list(combinations(range(len(LIPS)), 2)))
    distances = np.linalg.norm(lips[:, pairs[:, 0]] - lips[:, pairs[:, 1]], axis=2) / corners[:, None]
    out["lip_dynamics"] = float(distances.var(axis=0).mean() * 1000.0)

    if speech is not None:
        pause = _long_pauses(np.asarray(speech, bool)[::stride], fps / stride)[ok]
        gap = np.abs(tracked[:, list(INNER_UPPER), 1] - tracked[:, list(INNER_LOWER), 1]).mean(axis=1) / corners
        if pause.sum() >= 2:
            out["pause_lip_mad"] = float(np.median(np.abs(gap[pause] - gap[pause].mean())))
    return out


def _long_pauses(speech: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames inside runs of non-speech at least MIN_PAUSE_SECONDS long."""
    pause = np.zeros(len(speech), bool)
    start = None
    for index, talking in enumerate(np.append(speech, True)):
        if not talking and start is None:
            start = index
        elif talking and start is not None:
            if index - start >= MIN_PAUSE_SECONDS * fps:
                pause[start:index] = True
            start = None
    return pause


__all__ = ["naturalness"]
