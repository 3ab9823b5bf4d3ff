"""The frames the quality control measures: decoded scaled from a file, or scaled in memory.

Both paths give frames of one size (:func:`core.video.scaled_size`), area-averaged, so
``talkfarm eval`` (a file decoded) and the batch QC (the encoder's frames) measure alike.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.video import decode_scaled

DECODE_MAX_SIDE = 256           # Face Mesh sees a 192 px crop anyway; smaller frames decode faster


def decode_frames(path: str | Path, max_side: int = DECODE_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Every frame of a video as (T, h, w, 3) uint8 RGB, scaled so the longer side <= max_side.

    Returns (frames, fps). Raises ValueError if ffmpeg cannot read a video stream.
    """
    frames, info = decode_scaled(path, max_side)
    return frames, float(info.get("fps") or 25.0)


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One (H, W, 3) uint8 RGB frame at ``size`` = (w, h), area-averaged like ffmpeg's
    ``scale=...:flags=area`` in :func:`decode_frames` (returned as is when already that size)."""
    if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


__all__ = ["DECODE_MAX_SIDE", "decode_frames", "fit_frame"]
