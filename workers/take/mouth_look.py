"""How a mouth interior looks, in numbers: what bench/dub.py and the tests compare a dub's
opened mouths by against the take's own open mouths (``workers.take.mouth_bank``).

Read inside the inner lip line of a frame's landmarks (the rim pixel left out), in CIELAB:

* ``l_spread``: the standard deviation of L* (a flat painted fill is low, a bright patch of
  stretched teeth over a dark cavity is high);
* ``bright_share``: the share of the interior brighter than a given L* (teeth; a stretched
  tooth band makes a bright blob that covers far more of the opening than the take's teeth do);
* ``bright_band``: how many pixel rows across the middle of the mouth are brighter than that
  L*, over the mouth width (the teeth's height: a real mouth opening further shows more dark
  cavity, not taller teeth; teeth stretched with the opening make it grow);
* ``bright_run``: the longest unbroken run of those rows, over the mouth width (a grin's teeth
  stretched with the opening are one tall block; opened as a real mouth opens, the upper and
  the lower set are parted by dark cavity);
* ``corner_ratio``: mean L* of the interior's outer fifths along the mouth (corner to corner)
  over that of its middle fifth (heavy dark corners read well below the take's own).
"""

from __future__ import annotations

import cv2
import numpy as np

from workers.face import topology as topo
from workers.face.mouth import to_lab

# Shares of the mouth width (corner to corner) read as its corners, and as its middle.
CORNER_SHARE = 0.2
MIDDLE_SPAN = (0.4, 0.6)


def interior_pixels(frame: np.ndarray, landmarks: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The CIELAB colours (N, 3) (L* 0-100) of a frame's (H, W, 3) uint8 RGB mouth interior
    inside the inner lip line of its landmarks (478, 2+), the rim pixel left out; each pixel's
    place along the mouth (N,) (0 at the right inner corner, 1 at the left) and across it (N,)
    (pixels down the face from the corners' axis); None when the mouth is barely open (fewer
    than 6 pixels)."""
    points = np.asarray(landmarks, np.float64)[:, :2]
    polygon = points[topo.inner_mouth_polygon()]
    x0, y0 = np.floor(polygon.min(0) - 2).astype(int).clip(0, None)
    x1, y1 = np.ceil(polygon.max(0) + 2).astype(int)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    corners = np.round((polygon - [x0, y0] - 0.5) * 4).astype(np.int32)
    cv2.fillPoly(mask, [corners], 1, lineType=cv2.LINE_8, shift=2)
    inside = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0
    if inside.sum() < 6:
        return None
    lab = to_lab(frame[y0:y1, x0:x1][inside])
    right, left = points[topo.LIP_INNER_UPPER[0]], points[topo.LIP_INNER_UPPER[-1]]
    axis = left - right
    ys, xs = np.nonzero(inside)
    relative = np.stack([xs + x0 + 0.5, ys + y0 + 0.5], -1) - right
    length = max(float(np.linalg.norm(axis)), 1e-6)
    along = relative @ axis / length ** 2
    across = relative @ np.array([-axis[1], axis[0]]) / length
    return lab, along, across


def mouth_look(frame: np.ndarray, landmarks: np.ndarray, bright_l: float) -> dict | None:
    """``l_spread``, ``bright_share``, ``bright_band`` and ``bright_run`` (L* above ``bright_l``) and
    ``corner_ratio`` (module doc) of a frame's mouth interior; None when it is barely open (or has no
    corner or middle pixels)."""
    found = interior_pixels(frame, landmarks)
    if found is None:
        return None
    lab, along, across = found
    corner = (along < CORNER_SHARE) | (along > 1.0 - CORNER_SHARE)
    middle = (along >= MIDDLE_SPAN[0]) & (along <= MIDDLE_SPAN[1])
    if not corner.any() or not middle.any():
        return None
    light = lab[:, 0]
    # the bright rows across the middle of the mouth (one pixel each), over the mouth width
    rows = np.round(across[middle]).astype(int)
    rows -= rows.min()
    row_light = np.bincount(rows, light[middle]) / np.maximum(np.bincount(rows), 1)
    width = float(np.linalg.norm(np.subtract(*np.asarray(landmarks, np.float64)[list(topo.MOUTH_CORNERS_INNER), :2])))
    bright = row_light[np.bincount(rows) > 0] > bright_l
    # run lengths of the bright rows: where a run ends, the count since the last dark row
    since = np.cumsum(bright) - np.maximum.accumulate(np.where(bright, 0, np.cumsum(bright)))
    return {"l_spread": float(light.std()), "bright_share": float((light > bright_l).mean()),
            "bright_band": float(bright.sum() / max(width, 1e-3)),
            "bright_run": float(since.max(initial=0) / max(width, 1e-3)),
            "corner_ratio": float(light[corner].mean() / max(float(light[middle].mean()), 1e-3))}
