"""Where a dub's watermark goes at full strength: its re-rendered region per frame, feathered.

A dubbed frame is the take's own pixels except inside the face; the watermark
(``workers.encode.watermark``) is lighter on the take's own pixels (``BACKGROUND_WEIGHT``) and
whole inside the region. The weights are worked out per frame in a box around the region.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Where a stage re-rendered only part of a frame (a dub's face), the rest is the source's own
# pixels: the pattern goes there at this fraction of its strength. Measured on two 400x300
# webcam takes (BENCHMARKS.md, "Visual dubbing", round 3): 0.6 lifts the PSNR of the untouched
# region from 38 to 40 dB after h264 and costs the reader little, because h264 flattens most of
# the pattern in the plain background anyway; the face alone (0.0) is too little to read.
BACKGROUND_WEIGHT = 0.6
REGION_FEATHER = 0.04             # feather of a region's edge, in units of the region's size


@dataclass(frozen=True)
class RegionWeights:
    """Pattern strength per pixel of N frames re-rendered only inside a region each.

    ``BACKGROUND_WEIGHT`` everywhere except, for frame ``i`` with a region, inside
    ``boxes[i]`` = (x0, y0, x1, y1) frame pixels, where ``inside[i]`` (y1 - y0, x1 - x0)
    float32 holds it (1 within the region, feathered to the background outside it).
    Frames without a region (``boxes[i]`` None) are at the background strength throughout.
    """

    height: int
    width: int
    boxes: tuple[tuple[int, int, int, int] | None, ...]
    inside: tuple[np.ndarray | None, ...]

    def dense(self) -> np.ndarray:
        """(N, H, W) float32, every pixel's strength."""
        weights = np.full((len(self.boxes), self.height, self.width), BACKGROUND_WEIGHT, np.float32)
        for index, (box, inside) in enumerate(zip(self.boxes, self.inside)):
            if box is not None:
                x0, y0, x1, y1 = box
                weights[index, y0:y1, x0:x1] = inside
        return weights


def region_weights(height: int, width: int, regions: np.ndarray) -> RegionWeights:
    """Pattern weights for frames re-rendered only inside ``regions``.

    ``regions`` is (N, K, 2) float32: per frame a polygon in frame pixels (x, y), all NaN
    where the frame was not re-rendered at all. Weight 1 inside the polygon, feathered to
    ``BACKGROUND_WEIGHT`` outside it. The feather is worked out in a box around the polygon
    that holds its whole reach (OpenCV's float Gaussian spans 4 sigma); beyond the box the
    weight is the background's exactly.
    """
    boxes: list[tuple[int, int, int, int] | None] = []
    insides: list[np.ndarray | None] = []
    for polygon in regions:
        if not np.isfinite(polygon).all():
            boxes.append(None)
            insides.append(None)
            continue
        corners = np.round(polygon).astype(np.int32)
        sigma = max(1.0, REGION_FEATHER * float(np.ptp(polygon, axis=0).max()))
        reach = int(np.ceil(4 * sigma)) + 2
        x0, y0 = np.clip(corners.min(0) - reach, 0, [width, height])
        x1, y1 = np.clip(corners.max(0) + reach + 1, 0, [width, height])
        if x1 <= x0 or y1 <= y0:
            boxes.append(None)
            insides.append(None)
            continue
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [corners - np.array([x0, y0], np.int32)], 255)
        soft = _feather(inside, sigma)
        soft[inside > 0] = 1.0          # whole inside; the feather lies outside the polygon
        weights = np.full(inside.shape, BACKGROUND_WEIGHT, np.float32)
        weights += (1.0 - BACKGROUND_WEIGHT) * soft
        boxes.append((int(x0), int(y0), int(x1), int(y1)))
        insides.append(weights)
    return RegionWeights(height, width, tuple(boxes), tuple(insides))


def _feather(inside: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w) float32 Gaussian blur (``sigma`` px) of a uint8 0/255 mask, in [0, 1]. A big face's
    feather (sigma >= 8 px: a 960p frame's is ~17) is blurred on an area-reduced copy (by up to 4,
    keeping >= 2 px sigma) and interpolated back: ~10x cheaper, within 0.004 of the full blur."""
    factor = int(np.clip(sigma // 4, 1, 4))
    if factor == 1:
        return cv2.GaussianBlur(inside.astype(np.float32) / 255.0, (0, 0), sigma)
    height, width = inside.shape
    padded = cv2.copyMakeBorder(inside, 0, -height % factor, 0, -width % factor, cv2.BORDER_REFLECT_101)
    small = cv2.resize(padded.astype(np.float32) / 255.0, (padded.shape[1] // factor, padded.shape[0] // factor),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, padded.shape[::-1], interpolation=cv2.INTER_LINEAR)[:height, :width]
