"""The face latent space: identity, head pose, facial dynamics and gaze (DESIGN.md section 2).

Per-frame motion latent ``m`` (20 floats, :data:`MOTION_DIM`)::

    m[0:6]   head pose   yaw, pitch, roll (degrees), tx, ty (fraction of the crop side,
                         offset of the face centre from the crop centre), log_scale
                         (ln of pixels per canonical unit over the crop side)
    m[6:18]  dynamics    one coefficient per rig region (see :data:`DYNAMICS`), ~[0, 1]
    m[18:20] gaze        yaw, pitch of the eyes relative to the head (degrees);
                         +yaw looks toward image right, +pitch looks up

Canonical frame: x to image right, y down, z away from the camera (MediaPipe's
convention), origin at the centroid of the rigid landmarks, unit = distance between the
outer eye corners. ``image = s * R @ canonical + t`` (orthographic), with
``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``: +pitch nods down, +yaw turns the nose toward
image left, +roll tilts clockwise on screen.
"""

from __future__ import annotations

import math

import numpy as np
import torch

POSE = ("yaw", "pitch", "roll", "tx", "ty", "log_scale")
DYNAMICS = (
    "jaw_open",           # jaw rotates about a hinge axis in front of the ears, up to 17 degrees
    "lip_stretch",        # mouth corners pulled sideways (i, e)
    "lip_pucker",         # corners drawn in, lips pushed forward (o, u, w)
    "lip_press",          # lips thinned and pressed together (p, b, m closures)
    "upper_lip_raise",    # upper lip lifted off the teeth (f, v, sneer)
    "lower_lip_depress",  # lower lip pulled down (sh, disgust)
    "smile_left",         # subject's left corner up and out, cheek raised; negative = frown
    "smile_right",
    "blink_left",         # upper lid closes along the lid arc; 1 = closed, negative = widened
    "blink_right",
    "brow_raise",         # both brows and the forehead skin lift
    "brow_lower",         # inner brows down and together (frown, concentration)
)
GAZE = ("gaze_yaw", "gaze_pitch")

POSE_SLICE = slice(0, 6)
DYN_SLICE = slice(6, 6 + len(DYNAMICS))
GAZE_SLICE = slice(6 + len(DYNAMICS), 6 + len(DYNAMICS) + 2)
MOTION_DIM = 6 + len(DYNAMICS) + 2
MOTION_NAMES = POSE + DYNAMICS + GAZE


def dyn_index(name: str) -> int:
    """Index of a dynamics coefficient inside the full motion latent."""
    return DYN_SLICE.start + DYNAMICS.index(name)


# Named emotion offsets added to the dynamics (the `--emotion` control).
EMOTIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile_left": 0.6, "smile_right": 0.6, "brow_raise": 0.1, "blink_left": 0.12, "blink_right": 0.12},
    "sad": {"smile_left": -0.45, "smile_right": -0.45, "brow_raise": 0.25, "lower_lip_depress": 0.15},
    "surprised": {"brow_raise": 0.85, "blink_left": -0.35, "blink_right": -0.35, "jaw_open": 0.12},
    "angry": {"brow_lower": 0.8, "lip_press": 0.4, "smile_left": -0.15, "smile_right": -0.15},
}


def emotion_offset(emotion: str | tuple[float, ...] | list[float]) -> np.ndarray:
    """Dynamics offset (len(DYNAMICS),) for a named emotion or an explicit vector."""
    offset = np.zeros(len(DYNAMICS), dtype=np.float32)
    if isinstance(emotion, str):
        for name, value in EMOTIONS[emotion].items():
            offset[DYNAMICS.index(name)] = value
        return offset
    values = np.asarray(emotion, dtype=np.float32)
    if values.shape != offset.shape:
        raise ValueError(f"an emotion vector needs {len(DYNAMICS)} values ({', '.join(DYNAMICS)})")
    return values


def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """R = Rz(roll) Ry(yaw) Rx(pitch) from angles in degrees, each (T,) -> (T, 3, 3)."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = y.cos(), y.sin(), p.cos(), p.sin(), r.cos(), r.sin()
    row0 = torch.stack([cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp], -1)
    row1 = torch.stack([sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp], -1)
    row2 = torch.stack([-sy, cy * sp, cy * cp], -1)
    return torch.stack([row0, row1, row2], -2)


def euler_from_matrix(rot: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_matrix` for one (3, 3) matrix: (yaw, pitch, roll) degrees."""
    yaw = math.asin(float(np.clip(-rot[2, 0], -1.0, 1.0)))
    pitch = math.atan2(rot[2, 1], rot[2, 2])
    roll = math.atan2(rot[1, 0], rot[0, 0])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)
