"""Head and face geometry from landmarks: rigid fits, head rotation and pose, identity drift,
landmark jitter. Landmarks are (T, 478, 3) Face Mesh pixels (z in x's pixel scale), NaN rows
where no face was found."""

from __future__ import annotations

import math

import numpy as np

from workers.face.topology import LEFT_EYE_CORNERS, NOSE, RIGHT_EYE_CORNERS, RIGID

# Face shape for identity: rigid points + nose (no lips, lids, brows or jaw, which expressions move).
IDENTITY_POINTS = tuple(sorted(set(RIGID) | set(NOSE)))


def _iod(points: np.ndarray) -> float:
    """Inter-ocular distance: between the eye centres (mean of each eye's two corners)."""
    right = points[list(RIGHT_EYE_CORNERS), :2].mean(0)
    left = points[list(LEFT_EYE_CORNERS), :2].mean(0)
    return float(np.linalg.norm(left - right))


def _similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity (rotation, uniform scale, translation) of source onto target (..., N, D),
    one fit per leading index (the two broadcast against each other: one batched SVD instead
    of a Python loop over frames).

    Returns (fitted source (..., N, D), rotation matrices (..., D, D)); row vectors:
    fitted = scale * (source - its mean) @ rotation + target's mean."""
    source, target = np.broadcast_arrays(np.asarray(source, np.float64), np.asarray(target, np.float64))
    mu_s, mu_t = source.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    a, b = source - mu_s, target - mu_t
    u, s, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    d = np.ones(s.shape)
    d[..., -1] = np.sign(np.linalg.det(u @ vt))
    rotation = (u * d[..., None, :]) @ vt
    scale = (s * d).sum(-1) / np.maximum((a * a).sum((-2, -1)), 1e-12)
    return scale[..., None, None] * a @ rotation + mu_t, rotation


def rotation_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K,) degrees of the best rotation taking each point set a[k] onto b[k], both (K, N, 3)
    (Procrustes, one batched SVD)."""
    a = a - a.mean(-2, keepdims=True)
    b = b - b.mean(-2, keepdims=True)
    u, _, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    d = np.ones((len(a), 3))
    d[:, -1] = np.sign(np.linalg.det(u @ vt))
    rotation = (u * d[:, None, :]) @ vt
    cos = (np.trace(rotation, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def head_motion(landmarks: np.ndarray) -> np.ndarray:
    """(T-1,) rotation in degrees between consecutive frames' rigid landmarks (3D Procrustes).

    Uses topology.RIGID (forehead, nose bridge, eye corners, upper face outline); NaN where
    either frame has no face. Face Mesh's z is in the same pixel scale as x, so the 3D fit
    sees yaw and pitch as well as roll. Tracker jitter alone reads ~0.1-0.3 deg/frame.
    """
    rigid = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID)]
    out = np.full(max(len(rigid) - 1, 0), np.nan)
    if len(out):
        a, b = rigid[:-1], rigid[1:]
        ok = np.all(np.isfinite(a.reshape(len(a), -1)), axis=1) & np.all(np.isfinite(b.reshape(len(b), -1)), axis=1)
        if ok.any():
            out[ok] = rotation_angles(a[ok], b[ok])
    return out


HEAD_SPAN_FRAMES = 6


def head_motion_intensity(landmarks: np.ndarray, stride: int = 1, span: int = HEAD_SPAN_FRAMES) -> float:
    """Mean head rotation per frame, degrees: rotation between frames ``span`` apart / span.

    The 3D Procrustes rotation of the rigid points (:func:`head_motion`) between consecutive
    frames mostly measures tracker noise on small or low-resolution faces (~1 deg/frame at
    192 px); over a 6-frame span (0.24 s at 25 fps) the noise is divided by 6 while a head
    turn, smooth at that scale, is not. The span is rounded up to a multiple of ``stride``
    (the step between tracked frames). NaN with no pair of tracked frames that far apart.
    """
    span = stride * max(1, math.ceil(span / stride))
    rigid = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID)]
    starts = np.arange(0, len(rigid) - span, stride)
    if len(starts) == 0:          # a clip shorter than the span (7 frames at 25 fps)
        return float("nan")
    a, b = rigid[starts], rigid[starts + span]
    ok = np.all(np.isfinite(a.reshape(len(a), -1)), axis=1) & np.all(np.isfinite(b.reshape(len(b), -1)), axis=1)
    if not ok.any():
        return float("nan")
    return float(np.mean(rotation_angles(a[ok], b[ok]) / span))


def head_pose_angles(landmarks: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """(T, 3) yaw, pitch, roll in degrees of each frame's head relative to ``reference``.

    3D similarity Procrustes of the rigid points onto the reference's (the clip's median
    shape when None); angles from the rotation as R = Rz(roll) Ry(yaw) Rx(pitch) in image
    axes (x right, y down, z away). Only spans and curves are meaningful, not the zero.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID)]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    out = np.full((len(points), 3), np.nan)
    if not ok.any():
        return out
    ref = np.median(points[ok], axis=0) if reference is None else np.asarray(reference, np.float64)[list(RIGID)]
    _, rotation = _similarity_fit(ref, points[ok])     # row vectors: p_frame ~ p_ref @ rotation
    r = np.swapaxes(rotation, -1, -2)
    out[ok, 0] = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0)))      # yaw
    out[ok, 1] = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))             # pitch
    out[ok, 2] = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))             # roll
    return out


def identity_drift(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) face-shape distance of each frame from the portrait, % of inter-ocular distance.

    The frame's identity points (topology.RIGID + NOSE: forehead, nose, eye corners, upper
    face outline -- no lips, lids, brows or jaw) are fitted onto the portrait's by a 3D
    similarity Procrustes (removes head pose, position and size); the RMS residual is
    divided by the portrait's inter-ocular distance. NaN where no face.
    Real video (re-tracking the same person as the head turns): 1.5-3.5 %.
    """
    ref = np.asarray(reference, dtype=np.float64)[list(IDENTITY_POINTS)]
    iod = _iod(np.asarray(reference, dtype=np.float64))
    points = np.asarray(landmarks, dtype=np.float64)[:, list(IDENTITY_POINTS)]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    out = np.full(len(points), np.nan)
    if ok.any():
        fitted, _ = _similarity_fit(points[ok], ref)
        out[ok] = 100.0 * np.sqrt(np.mean(np.sum((fitted - ref) ** 2, axis=-1), axis=-1)) / iod
    return out


def landmark_jitter(landmarks: np.ndarray, step: int = 1, dims: int = 2) -> float:
    """High-frequency landmark motion, % of inter-ocular distance per frame.

    The rigid points (topology.RIGID) of each tracked frame are fitted (similarity) onto
    the clip's median shape, which removes head motion; the remaining per-point image-plane
    residual's second temporal difference r[t+1] - 2 r[t] + r[t-1] (over consecutive tracked
    samples ``step`` frames apart) is RMS-averaged and divided by sqrt(6), so white noise of
    standard deviation s per coordinate reads s. Slow drift and smooth head turns cancel in
    the second difference; tracker noise and frame-to-frame wobble of the render do not
    (white noise reads the same whatever the step).

    ``dims`` = 2 fits in the image plane (every frame: a frame's yaw or pitch is too small to
    matter); 3 fits in 3D (Face Mesh's z), which also removes yaw and pitch: needed when the
    samples are far apart (batch QC, 8 frames), where the image-plane fit leaves the head's
    turning in the residual and the figure would double (bench/qc_tracking.py).
    Returns NaN with fewer than 3 consecutive tracked samples.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID), :dims]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    if ok.sum() < 3:
        return float("nan")
    median = np.median(points[ok], axis=0)
    iod = _iod(np.median(np.asarray(landmarks, dtype=np.float64)[ok], axis=0))
    residual = np.full_like(points[..., :2], np.nan)
    residual[ok] = (_similarity_fit(points[ok], median)[0] - median)[..., :2]
    second = residual[2 * step:] - 2 * residual[step:-step] + residual[:-2 * step]
    second = second[np.all(np.isfinite(second.reshape(len(second), -1)), axis=1)]
    if len(second) == 0 or iod <= 0:
        return float("nan")
    return 100.0 * math.sqrt(float(np.mean(second ** 2)) / 6.0) / iod


__all__ = ["IDENTITY_POINTS", "HEAD_SPAN_FRAMES", "rotation_angles", "head_motion", "head_motion_intensity",
           "head_pose_angles", "identity_drift", "landmark_jitter"]
