"""A face in the latent space: identity shape + rig, decoded to landmarks and fitted back.

:class:`FaceModel` is built from one photo's landmarks. ``landmarks(m)`` decodes motion
latents to 478 landmarks in crop pixels (batched torch, any device); ``encode(landmarks)``
fits pose, dynamics and gaze to detected landmarks (Procrustes on the rigid points, then
regularised least squares on the rig), so ``encode(landmarks(m)) ~ m``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import lsq_linear

from workers.face import topology as topo
from workers.face.latents import (
    DYN_SLICE,
    DYNAMICS,
    GAZE_SLICE,
    MOTION_DIM,
    POSE_SLICE,
    euler_from_matrix,
    rotation_matrix,
)
from workers.face.rest_lips import rest_lips
from workers.face.rig import EYEBALL_RADIUS, build_rig

RIG_VERSION = "talkfarm-rig-4"
# Below this jaw opening in the photo, what the rig does not reproduce of the photo stays in
# the identity instead of being folded into the jaw field (dividing by ~0 would blow it up).
MIN_JAW_FOR_RESIDUAL = 0.05
# Inner-lip landmark pairs (upper, lower) between the corners, right to left.
_INNER_LIP_PAIRS = tuple(zip(topo.LIP_INNER_UPPER[1:-1], topo.LIP_INNER_LOWER[1:-1]))
# Gaussian falloff (canonical units) of the lip closure into the lips and skin around them:
# about one lip's thickness, so the outer lip line follows the inner one.
LIP_CLOSE_SIGMA = 0.06
# Coefficients that are signed (a frown is a negative smile, wide eyes a negative blink);
# every other coefficient is one-sided, >= 0.
DYNAMICS_LOWER_BOUND = {"smile_left": -1.0, "smile_right": -1.0, "blink_left": -1.0, "blink_right": -1.0}
_IRISES = (topo.RIGHT_IRIS, topo.LEFT_IRIS)
_EYE_CORNERS = (topo.RIGHT_EYE_CORNERS, topo.LEFT_EYE_CORNERS)


def frontal_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The face's own frontal frame from its symmetry, for landmarks (478, 3) in pixels.

    Returns (R, t, s): rotation (3, 3) canonical->image, origin t (3,) = centroid of the rigid
    landmarks, and scale s = outer eye-corner distance in pixels.
    """
    right = points[[a for a, _ in topo.MIRROR_PAIRS]]
    left = points[[b for _, b in topo.MIRROR_PAIRS]]
    x_axis = (left - right).mean(0)
    x_axis /= np.linalg.norm(x_axis)
    midline = points[list(topo.MIDLINE)]
    _, _, vt = np.linalg.svd(midline - midline.mean(0))
    y_axis = vt[0] if (midline[-1] - midline[0]) @ vt[0] > 0 else -vt[0]
    y_axis = y_axis - (y_axis @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    rot = np.stack([x_axis, y_axis, np.cross(x_axis, y_axis)], 1)
    origin = points[list(topo.RIGID)].mean(0)
    scale = float(np.linalg.norm(points[263] - points[33]))
    return rot, origin, scale


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama: s, R, t minimising |target - (s R source + t)|^2 for (N, 3) point sets."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    u, sing, vt = np.linalg.svd(b.T @ a / len(a))
    d = np.eye(3)
    d[2, 2] = np.sign(np.linalg.det(u @ vt))
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sing) @ d) / (a ** 2).sum(1).mean())
    return scale, rot, mu_t - scale * rot @ mu_s


@dataclass
class FaceModel:
    """One identity in the latent space.

    Attributes:
        identity: (478, 3) canonical shape, expression neutralised, irises at straight gaze.
        basis: (len(DYNAMICS), 478, 3) rig displacement per unit coefficient.
        source_latent: (MOTION_DIM,) pose, dynamics and gaze of the source photo.
        crop_size: side of the crop the pixel coordinates refer to.
    """

    identity: np.ndarray
    basis: np.ndarray
    source_latent: np.ndarray
    crop_size: int
    version: str = RIG_VERSION

    @classmethod
    def from_landmarks(cls, points: np.ndarray, crop_size: int) -> "FaceModel":
        """Build the model from one photo's landmarks (478, 3) in crop pixels."""
        points = points.astype(np.float64)
        rot, origin, scale = frontal_frame(points)
        canonical = (points - origin) @ rot / scale
        # Neutralise what a photo commonly holds: parted lips and a smile. The identity is
        # the closed-mouth shape; the smile stays as the source's own expression baseline.
        photo_basis = build_rig(canonical)
        dyn = _neutral_dynamics(canonical, photo_basis)
        identity = canonical - np.tensordot(dyn, photo_basis, 1)
        # The jaw field opens a lens; a photo's opening has its own shape (an open smile is
        # wide and flat), so the jaw alone leaves the lips apart toward the corners. Close the
        # rest explicitly: the identity's inner lips meet along the whole mouth.
        identity = identity + close_lips(identity)
        # Closed so, an open photo's lips keep the shape they had apart (an "O" keeps its round
        # inner line and its tucked-in corners, and folds when the head pitches): they are laid
        # in their rest geometry instead, with the photo's own thickness.
        if dyn[DYNAMICS.index("jaw_open")] > 0.0:
            identity = identity + rest_lips(identity, canonical)
        # The rig is built on the closed shape: fields that act on the lip lines (the press
        # pulls each inner line toward the other) are then defined from lips that touch, and
        # do not push a parted photo's lips through each other.
        basis = build_rig(identity)
        # Whatever the rig on the closed shape does not reproduce of the photo (mostly the
        # closure above) becomes part of this face's jaw field, so the source latent decodes
        # to the photo's own landmarks exactly and jaw_open = 0 closes the photo's own opening.
        residual = canonical - identity - np.tensordot(dyn, basis, 1)
        jaw = DYNAMICS.index("jaw_open")
        if dyn[jaw] > MIN_JAW_FOR_RESIDUAL:
            basis[jaw] += (residual / dyn[jaw]).astype(basis.dtype)
        else:
            # A photo barely parted (teeth glinting between lips that nearly meet) keeps its
            # residual in the identity, and with it its gap: closed latents then rendered the
            # lips ~2 px apart with the photo's teeth between them (the standing Obama read
            # 0.06-0.07 mouth widths open at yaw -15). Closed means meeting: close them again;
            # the source latent then decodes to the photo with its lips just touching.
            identity = identity + residual
            identity = identity + close_lips(identity)
        # Gaze: mean iris offset from the eye-corner midpoints. Both irises move back by the
        # shared offset only, so each eye keeps its own small asymmetry.
        offsets = [identity[list(iris)].mean(0) - identity[list(corners)].mean(0)
                   for iris, corners in zip(_IRISES, _EYE_CORNERS)]
        gaze = _gaze_from_offset(np.mean(offsets, 0)[:2])
        identity[list(topo.RIGHT_IRIS + topo.LEFT_IRIS)] -= _offset_from_gaze(gaze)
        yaw, pitch, roll = euler_from_matrix(rot)
        latent = np.zeros(MOTION_DIM)
        latent[POSE_SLICE] = [yaw, pitch, roll, origin[0] / crop_size - 0.5, origin[1] / crop_size - 0.5,
                              math.log(scale / crop_size)]
        latent[DYN_SLICE] = dyn
        latent[GAZE_SLICE] = gaze
        return cls(identity.astype(np.float32), basis, latent.astype(np.float32), crop_size)

    def landmarks(self, motion: torch.Tensor) -> torch.Tensor:
        """Decode motion latents (T, MOTION_DIM) to landmarks (T, 478, 3) in crop pixels."""
        device, dtype = motion.device, motion.dtype
        identity = torch.as_tensor(self.identity, device=device, dtype=dtype)
        basis = torch.as_tensor(self.basis, device=device, dtype=dtype)
        shape = identity + torch.einsum("tk,knc->tnc", motion[:, DYN_SLICE], basis)
        gaze = torch.deg2rad(motion[:, GAZE_SLICE])
        iris_shift = EYEBALL_RADIUS * torch.stack([gaze[:, 0].sin(), -gaze[:, 1].sin(), torch.zeros_like(gaze[:, 0])], -1)
        iris_idx = torch.tensor(topo.RIGHT_IRIS + topo.LEFT_IRIS, device=device)
        shape = shape.index_add(1, iris_idx, iris_shift[:, None, :].expand(-1, len(iris_idx), -1))
        return self.project(shape, motion[:, POSE_SLICE])

    def project(self, shape: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Canonical points (T, N, 3) or (N, 3) posed by pose (T, 6) -> crop pixels (T, N, 3)."""
        rot = rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
        scale = self.crop_size * pose[:, 5].exp()
        offset = torch.stack([(pose[:, 3] + 0.5) * self.crop_size, (pose[:, 4] + 0.5) * self.crop_size,
                              torch.zeros_like(pose[:, 3])], -1)
        return scale[:, None, None] * shape @ rot.transpose(1, 2) + offset[:, None, :]

    def encode(self, points: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
        """Fit motion latents to detected landmarks (T, 478, 3) in crop pixels -> (T, MOTION_DIM).

        Pose: similarity Procrustes on the rigid landmarks. Dynamics: ridge-regularised,
        bounded least squares of the canonical residual on the rig (depth weighted 0.3:
        MediaPipe's z is a guess); one-sided coefficients (a jaw cannot open negatively)
        are kept >= 0, which stops a negative lip press from standing in for an open jaw.
        Gaze: iris centre offset from its neutral place over the eyeball radius.
        """
        rigid = list(topo.RIGID)
        movable = np.setdiff1d(np.arange(topo.NUM_LANDMARKS), rigid + list(topo.RIGHT_IRIS + topo.LEFT_IRIS))
        weights = np.array([1.0, 1.0, 0.3])
        design = (self.basis[:, movable, :] * weights).reshape(len(DYNAMICS), -1).T.astype(np.float64)
        gram = design.T @ design
        damping = np.sqrt(ridge * np.trace(gram) / len(DYNAMICS))
        # Ridge as extra rows, so the bounded solver sees the same objective.
        augmented = np.vstack([design, damping * np.eye(len(DYNAMICS))])
        lower = np.array([DYNAMICS_LOWER_BOUND.get(name, 0.0) for name in DYNAMICS])
        out = np.zeros((len(points), MOTION_DIM), dtype=np.float32)
        for i, frame in enumerate(points.astype(np.float64)):
            scale, rot, origin = similarity_fit(self.identity[rigid], frame[rigid])
            canonical = (frame - origin) @ rot / scale
            residual = ((canonical - self.identity)[movable] * weights).reshape(-1)
            rhs = np.concatenate([residual, np.zeros(len(DYNAMICS))])
            dyn = lsq_linear(augmented, rhs, bounds=(lower, np.inf), method="bvls").x
            gaze = np.mean([_gaze_from_offset((canonical[list(iris)] - self.identity[list(iris)]).mean(0)[:2])
                            for iris in _IRISES], axis=0)
            yaw, pitch, roll = euler_from_matrix(rot)
            out[i, POSE_SLICE] = [yaw, pitch, roll, origin[0] / self.crop_size - 0.5,
                                  origin[1] / self.crop_size - 0.5, math.log(scale / self.crop_size)]
            out[i, DYN_SLICE] = dyn
            out[i, GAZE_SLICE] = gaze
        return out


def _neutral_dynamics(canonical: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Dynamics (len(DYNAMICS),) a photo's shape holds: jaw opening and smile.

    canonical: (478, 3) the photo's landmarks in the canonical frame; basis: its rig.
    """
    dyn = np.zeros(len(DYNAMICS))
    up, low = topo.LIP_CENTER_INNER
    gap = canonical[low, 1] - canonical[up, 1]
    jaw_gap = basis[DYNAMICS.index("jaw_open"), low, 1] - basis[DYNAMICS.index("jaw_open"), up, 1]
    dyn[DYNAMICS.index("jaw_open")] = max(0.0, (gap - 0.01) / jaw_gap)
    corner_lift = canonical[[up, low], 1].mean() - canonical[list(topo.MOUTH_CORNERS_OUTER), 1].mean()
    smile = float(np.clip((corner_lift - 0.02) / 0.08, 0.0, 1.0))
    dyn[DYNAMICS.index("smile_left")] = dyn[DYNAMICS.index("smile_right")] = smile
    return dyn


def close_lips(shape: np.ndarray) -> np.ndarray:
    """Displacement (478, 3) that brings a shape's inner lip lines together.

    Each inner-lip pair (upper, lower) moves to its midpoint, half the gap each; only parted
    pairs move (lips already touching or overlapping stay). Each lip carries its own skin:
    landmarks above the lips' meeting line follow the upper handles, those below the lower
    ones, with a Gaussian falloff (sigma LIP_CLOSE_SIGMA), so the lips keep their thickness.
    The rigid landmarks and irises never move.

    shape: (478, 3) canonical units.
    """
    upper = np.array([u for u, _ in _INNER_LIP_PAIRS])
    lower = np.array([l for _, l in _INNER_LIP_PAIRS])
    gap = shape[lower] - shape[upper]                                              # (P, 3)
    parted = (gap[:, 1] > 0.0)[:, None]
    half = np.where(parted, 0.5 * gap, 0.0)
    meet = 0.5 * (shape[upper] + shape[lower])                                     # (P, 3)
    # Which lip each landmark belongs to: above or below the meeting line at its x.
    order = np.argsort(meet[:, 0])
    meet_y = np.interp(shape[:, 0], meet[order, 0], meet[order, 1])
    below = shape[:, 1] > meet_y
    below[upper] = False
    below[lower] = True
    out = np.zeros_like(shape)
    for handles, vectors, side in ((upper, half, ~below), (lower, -half, below)):
        d2 = ((shape[:, None, :] - shape[None, handles, :]) ** 2).sum(-1)          # (N, P)
        k = np.exp(-d2 / (2.0 * LIP_CLOSE_SIGMA ** 2))
        field = (k @ vectors) / np.maximum(1.0, k.sum(1, keepdims=True))
        out[side] = field[side]
    out[upper] = half
    out[lower] = -half
    out[list(topo.RIGID)] = 0.0
    out[list(topo.RIGHT_IRIS + topo.LEFT_IRIS)] = 0.0
    return out


def _offset_from_gaze(gaze: np.ndarray) -> np.ndarray:
    """Gaze (yaw, pitch) in degrees -> iris centre offset (3,) in canonical units."""
    yaw, pitch = np.radians(gaze)
    return EYEBALL_RADIUS * np.array([np.sin(yaw), -np.sin(pitch), 0.0])


def _gaze_from_offset(offset_xy: np.ndarray) -> np.ndarray:
    """Iris offset (x, y) in canonical units -> gaze (yaw, pitch) in degrees."""
    ratio = np.clip(np.asarray(offset_xy, dtype=np.float64) / EYEBALL_RADIUS, -0.99, 0.99)
    return np.degrees(np.arcsin(ratio)) * np.array([1.0, -1.0])
