"""A dub's watermark weights: whole on the re-rendered region, feathered to the background."""

from __future__ import annotations

import cv2
import numpy as np

from workers.encode import watermark as wm
from workers.encode.regions import BACKGROUND_WEIGHT, REGION_FEATHER, region_weights


def test_region_weights_match_the_whole_frame_definition():
    """The dub's pattern strength is worked out in a box per region; it must match the plain
    definition over the whole frame (fill the polygon, feather it with a Gaussian, background
    weight outside): exactly for a small face's feather (sigma < 8 px), within 0.002 where a big
    face's feather is blurred on a reduced copy (a region in the middle, one over the frame's
    edge), and none at all for a frame without a region; embedding with the weights must equal
    the plain int16 sum."""
    height, width = 360, 480
    angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
    regions = np.stack([np.c_[240 + 90 * np.cos(angles), 180 + 120 * np.sin(angles)],
                        np.c_[460 + 110 * np.cos(angles), 20 + 150 * np.sin(angles)],
                        np.c_[100 + 50 * np.cos(angles), 250 + 60 * np.sin(angles)],
                        np.full((36, 2), np.nan)]).astype(np.float32)
    plain = np.full((4, height, width), BACKGROUND_WEIGHT, np.float32)
    sigmas = []
    for index, polygon in enumerate(regions[:3]):
        inside = np.zeros((height, width), np.uint8)
        cv2.fillPoly(inside, [np.round(polygon).astype(np.int32)], 255)
        sigmas.append(max(1.0, REGION_FEATHER * float(np.ptp(polygon, axis=0).max())))
        soft = cv2.GaussianBlur(inside.astype(np.float32) / 255.0, (0, 0), sigmas[-1])
        soft[inside > 0] = 1.0
        plain[index] += (1.0 - BACKGROUND_WEIGHT) * soft
    assert sigmas[0] >= 8 and sigmas[1] >= 8 and sigmas[2] < 8
    weights = region_weights(height, width, regions)
    assert weights.boxes[3] is None
    dense = weights.dense()
    assert np.array_equal(dense[2:], plain[2:])
    error = np.abs(dense[:2] - plain[:2])
    assert error.max() < 0.002 and error.max() > 0       # reduced, and close
    assert (dense[:2] == BACKGROUND_WEIGHT).mean() > 0.5 and (dense[:2] == 1.0).mean() > 0.1
    frames = np.random.default_rng(0).integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    payload = wm.payload_for("0123456789abcdef")
    delta = np.rint(wm._frame_delta_float(payload, height, width)[None] * dense).astype(np.int16)
    expected = np.clip(frames.astype(np.int16) + delta[..., None], 0, 255).astype(np.uint8)
    assert np.array_equal(wm.embed(frames, payload, weights), expected)
