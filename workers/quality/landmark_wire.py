"""Face Mesh's landmark message read from its serialized bytes (a fast path past protobuf)."""

from __future__ import annotations

import numpy as np

# NormalizedLandmarkList on the wire, as Face Mesh fills it: per landmark one length-delimited
# record 0x0a 0x0f, then x, y, z as fixed32 floats (tags 0x0d, 0x15, 0x1d); 17 bytes each.
_RECORD = 17
_RECORD_TAGS = np.array([0x0A, 0x0F, 0x0D, 0x15, 0x1D], np.uint8)
_TAG_AT = np.array([0, 1, 2, 7, 12])
_FLOAT_AT = np.array([3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16])


def landmark_array(landmark_list) -> np.ndarray:
    """(468, 3) float64 normalized x, y, z of a Face Mesh NormalizedLandmarkList.

    Read from the message's serialized bytes when they have the fixed layout above (one
    C++ call, ~0.07 ms) instead of 1404 Python attribute reads (~0.5-1 ms, a third of the
    tracking cost at a stride); any other layout (e.g. visibility set) takes the slow path.
    """
    raw = np.frombuffer(landmark_list.SerializeToString(), np.uint8)
    if len(raw) >= 468 * _RECORD and len(raw) % _RECORD == 0:
        records = raw[:468 * _RECORD].reshape(468, _RECORD)
        if np.array_equal(records[:, _TAG_AT], np.broadcast_to(_RECORD_TAGS, (468, 5))):
            return records[:, _FLOAT_AT].copy().view("<f4").reshape(468, 3).astype(np.float64)
    points = landmark_list.landmark
    return np.array([[p.x, p.y, p.z] for p in points[:468]], np.float64)


__all__ = ["landmark_array"]
