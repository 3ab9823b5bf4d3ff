"""The expression rig: one displacement field per facial-dynamics coefficient.

Each field is defined geometrically on a face's canonical landmark shape (478, 3), in
canonical units (outer eye-corner distance = 1): a coefficient of 1 moves its region by the
documented amount, with a smooth Gaussian falloff into the surrounding skin. The rigid
landmarks (forehead, nose bridge, eye corners) never move, so head pose can be fitted on
them alone. Fields are linear in their coefficient, except that the jaw field is the chord
of a true rotation about the hinge axis (exact at 0 and 1).
"""

from __future__ import annotations

import numpy as np

from workers.face import topology as topo
from workers.face.latents import DYNAMICS

JAW_MAX_RADIANS = 0.30        # ~17 degrees: a wide-open mouth at jaw_open = 1
EYEBALL_RADIUS = 0.125        # canonical units (~12 mm for a ~95 mm outer eye-corner span)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _spread(shape: np.ndarray, handles: dict[int, np.ndarray], sigma: float) -> np.ndarray:
    """Displacement field from per-landmark handle vectors with Gaussian falloff.

    D(x) = sum_i v_i k_i(x) / max(1, sum_i k_i(x)), k_i = exp(-|x - x_i|^2 / 2 sigma^2):
    handle points keep (about) their vector, skin far from every handle does not move.
    """
    idx = np.array(list(handles), dtype=np.int64)
    vectors = np.stack([handles[i] for i in idx]).astype(np.float64)           # (H, 3)
    # |x - x_i|^2 coordinate by coordinate on (N, H) planes, summed in numpy's order for a
    # 3-long last axis ((x + y) + z): the same doubles as ``((a - b) ** 2).sum(-1)`` in less
    # time (a reduction over a 3-long axis is numpy's slow case; the rig is built every frame).
    columns = shape.T[:, :, None] - shape.T[:, None, idx]                      # (3, N, H)
    columns *= columns
    d2 = (columns[0] + columns[1]) + columns[2]                                # (N, H)
    k = np.exp(-d2 / (2.0 * sigma * sigma))
    return (k @ vectors) / np.maximum(1.0, k.sum(1, keepdims=True))


def build_rig(shape: np.ndarray) -> np.ndarray:
    """Rig basis for one canonical face shape (478, 3) -> (len(DYNAMICS), 478, 3)."""
    shape = shape.astype(np.float64)
    x, y = shape[:, 0], shape[:, 1]
    mouth_c = shape[list(topo.LIP_CENTER_INNER)].mean(0)
    eye_line_y = shape[list(topo.RIGHT_EYE_CORNERS + topo.LEFT_EYE_CORNERS)][:, 1].mean()
    lateral = np.exp(-((x - mouth_c[0]) ** 2) / (2 * 0.22 ** 2))  # lip moves fade toward the corners
    fields: dict[str, np.ndarray] = {}

    # Jaw: rotate the mandible about a hinge axis (x) in front of the ears.
    side = shape[[234, 454]].mean(0)
    hinge = np.array([0.0, 0.5 * (side[1] + shape[2, 1]) - 0.05, side[2] + 0.15])
    c, s = np.cos(JAW_MAX_RADIANS), np.sin(JAW_MAX_RADIANS)
    rel = shape - hinge
    rotated = np.stack([rel[:, 0], rel[:, 1] * c - rel[:, 2] * s, rel[:, 1] * s + rel[:, 2] * c], -1)
    weight = _smoothstep((y - (mouth_c[1] - 0.04)) / 0.2)
    # The lips stay joined near the corners, so the opening is lens-shaped, not a grin.
    half_width = 0.5 * abs(shape[topo.MOUTH_CORNERS_OUTER[1], 0] - shape[topo.MOUTH_CORNERS_OUTER[0], 0])
    along = np.clip(np.abs(x - mouth_c[0]) / half_width, 0.0, 1.0)
    weight[list(topo.UPPER_LIP)] = 0.0
    lower_lip = list(topo.LOWER_LIP)
    weight[lower_lip] = 0.35 + 0.65 * np.cos(0.5 * np.pi * along[lower_lip]) ** 0.7
    weight[list(topo.MOUTH_CORNERS_OUTER + topo.MOUTH_CORNERS_INNER)] = 0.3
    fields["jaw_open"] = weight[:, None] * (rotated - rel)

    def corners(v_right: np.ndarray, inner_share: float = 0.8) -> dict[int, np.ndarray]:
        v_left = v_right * np.array([-1.0, 1.0, 1.0])
        r_out, l_out = topo.MOUTH_CORNERS_OUTER
        r_in, l_in = topo.MOUTH_CORNERS_INNER
        return {r_out: v_right, l_out: v_left, r_in: inner_share * v_right, l_in: inner_share * v_left}

    fields["lip_stretch"] = _spread(shape, corners(np.array([-0.10, 0.0, 0.02])), 0.10)
    pucker = corners(np.array([0.10, 0.0, -0.03]))
    for i in topo.LIP_CENTER_INNER + (0, 17):
        pucker[i] = np.array([0.0, 0.0, -0.06])
    fields["lip_pucker"] = _spread(shape, pucker, 0.09)

    press = {i: np.array([0.0, 0.045, 0.0]) * lateral[i] for i in topo.UPPER_LIP}
    press.update({i: np.array([0.0, -0.045, 0.0]) * lateral[i] for i in topo.LOWER_LIP})
    fields["lip_press"] = _spread(shape, press, 0.04)
    fields["upper_lip_raise"] = _spread(
        shape, {i: np.array([0.0, -0.07, 0.0]) * lateral[i] for i in topo.UPPER_LIP}, 0.06)
    fields["lower_lip_depress"] = _spread(
        shape, {i: np.array([0.0, 0.07, 0.0]) * lateral[i] for i in topo.LOWER_LIP}, 0.06)

    for name, corner, inner, cheek, sign in (
        ("smile_right", topo.MOUTH_CORNERS_OUTER[0], topo.MOUTH_CORNERS_INNER[0], 205, -1.0),
        ("smile_left", topo.MOUTH_CORNERS_OUTER[1], topo.MOUTH_CORNERS_INNER[1], 425, 1.0),
    ):
        v = np.array([0.06 * sign, -0.08, -0.02])
        fields[name] = _spread(shape, {corner: v, inner: 0.8 * v, cheek: np.array([0.0, -0.035, -0.02])}, 0.11)

    for name, upper, lower in (
        ("blink_right", topo.RIGHT_EYE_UPPER, topo.RIGHT_EYE_LOWER),
        ("blink_left", topo.LEFT_EYE_UPPER, topo.LEFT_EYE_LOWER),
    ):
        handles = {}
        for u, l in zip(upper[1:-1], lower[1:-1]):
            gap = shape[l] - shape[u]
            handles[u] = 0.95 * gap          # lashes meet just above the lower lid
            handles[l] = -0.05 * gap
        lids = _spread(shape, handles, 0.035)
        lids[list(upper[1:-1] + lower[1:-1])] = np.stack([handles[i] for i in upper[1:-1] + lower[1:-1]])
        fields[name] = lids

    above_eyes = _smoothstep((eye_line_y - y + 0.02) / 0.08)[:, None]
    brows = topo.RIGHT_BROW + topo.LEFT_BROW
    fields["brow_raise"] = above_eyes * _spread(shape, {i: np.array([0.0, -0.07, 0.0]) for i in brows}, 0.12)
    lower = {i: np.array([0.03, 0.05, 0.0]) for i in topo.RIGHT_BROW_INNER}
    lower.update({i: np.array([-0.03, 0.05, 0.0]) for i in topo.LEFT_BROW_INNER})
    fields["brow_lower"] = above_eyes * _spread(shape, lower, 0.09)

    basis = np.stack([fields[name] for name in DYNAMICS]).astype(np.float32)
    basis[:, list(topo.RIGID)] = 0.0
    basis[:, list(topo.RIGHT_IRIS + topo.LEFT_IRIS)] = 0.0
    return basis
