"""Named index sets of MediaPipe Face Mesh's 478 landmarks (468 mesh + 10 iris).

Indices follow mediapipe.solutions.face_mesh_connections. "Left"/"right" are the subject's:
the subject's right eye (33..133) appears on the image's left for a frontal photo. Contours
are ordered so they can be drawn as polygons.
"""

from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478

FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
             152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)

# Lips, each from the subject's right corner (image left) to the left corner.
LIP_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIP_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIP_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNERS_OUTER = (61, 291)   # (right, left)
MOUTH_CORNERS_INNER = (78, 308)
LIP_CENTER_INNER = (13, 14)       # (upper, lower) midpoints of the inner lip line

# Eyes, each lid from the outer to the inner corner.
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_EYE_CORNERS = (33, 133)     # (outer, inner)
LEFT_EYE_CORNERS = (263, 362)

# Skin between the upper lid and the brow; it follows a blink part of the way.
RIGHT_LID_CREASE = (246, 161, 160, 159, 158, 157, 173, 56, 28, 27, 29, 30, 247, 190)
LEFT_LID_CREASE = (466, 388, 387, 386, 385, 384, 398, 286, 258, 257, 259, 260, 467, 414)

RIGHT_IRIS = (468, 469, 470, 471, 472)   # center first
LEFT_IRIS = (473, 474, 475, 476, 477)

RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
RIGHT_BROW_INNER = (55, 65, 107, 66)
LEFT_BROW_INNER = (285, 295, 336, 296)

NOSE = (1, 4, 5, 195, 197, 6, 168, 2, 98, 327, 64, 294, 48, 278)
CHEEKS = (50, 280, 205, 425, 187, 411, 123, 352, 117, 346, 216, 436)
CHIN = (152, 175, 199, 200, 18, 32, 262, 208, 428)

# Points no expression moves: forehead, nose bridge, eye corners, upper face outline.
# Head pose is fitted on these alone.
RIGID = (10, 338, 297, 109, 67, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263,
         98, 327, 234, 454, 127, 356, 93, 323, 162, 389, 21, 251)

# Left/right mirror pairs used to find the face's own frontal frame.
MIRROR_PAIRS = ((33, 263), (133, 362), (61, 291), (234, 454), (70, 300), (105, 334),
                (98, 327), (127, 356), (93, 323), (132, 361), (58, 288), (172, 397))
MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 0, 17, 18, 200, 199, 175, 152)

LIPS_ALL = tuple(sorted(set(LIP_OUTER_UPPER + LIP_OUTER_LOWER + LIP_INNER_UPPER + LIP_INNER_LOWER)))
UPPER_LIP = tuple(sorted(set(LIP_OUTER_UPPER[1:-1] + LIP_INNER_UPPER[1:-1])))
LOWER_LIP = tuple(sorted(set(LIP_OUTER_LOWER[1:-1] + LIP_INNER_LOWER[1:-1])))


def inner_mouth_polygon() -> np.ndarray:
    """Closed polygon of the inner lip line: upper lip right->left, then lower lip back. (20,)"""
    return np.array(LIP_INNER_UPPER + LIP_INNER_LOWER[-2:0:-1], dtype=np.int64)


def eye_polygon(side: str) -> np.ndarray:
    """Closed polygon of one eye opening, ``side`` in {"left", "right"}. (16,)"""
    upper, lower = (LEFT_EYE_UPPER, LEFT_EYE_LOWER) if side == "left" else (RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)
    return np.array(upper + lower[-2:0:-1], dtype=np.int64)


# Landmarks that steer the dense warp (the rest are redundant for a smooth flow and would only
# make the per-frame spline solve larger). Irises are rendered separately by the decoder.
WARP_CONTROL = tuple(sorted(set(
    FACE_OVAL + LIPS_ALL + RIGHT_EYE_UPPER + RIGHT_EYE_LOWER + LEFT_EYE_UPPER + LEFT_EYE_LOWER
    + RIGHT_BROW + LEFT_BROW + NOSE + CHEEKS + CHIN + RIGHT_LID_CREASE + LEFT_LID_CREASE
)))
