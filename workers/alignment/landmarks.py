"""MediaPipe Face Mesh (478 landmarks, its models ship inside the mediapipe wheel)."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import cv2
import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DETECT_MAX_SIDE = 1280      # the face detector sees a 128 px thumbnail; bigger inputs gain nothing
REFINE_SIDE = 512           # second pass: a square around the face at this size
DETECT_TILE_SIDE = 640      # tiles of the small-face scan are resampled to at most this


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence TFLite/glog chatter written straight to fd 2 by MediaPipe's C++ code."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass(frozen=True)
class DetectedFace:
    """One face: landmarks (478, 3) in image pixels (z in the same pixel scale as x)."""

    landmarks: np.ndarray

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the mesh in pixels."""
        x0, y0 = self.landmarks[:, :2].min(0)
        x1, y1 = self.landmarks[:, :2].max(0)
        return float(x0), float(y0), float(x1), float(y1)

    @property
    def size(self) -> float:
        """Face size in pixels: the larger side of the mesh's bounding box."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)


class FaceMeshDetector:
    """Finds faces and their 478 landmarks in RGB images (static photos or video frames).

    Two passes: detection on the whole photo (downscaled if huge), then the mesh again on a
    square crop around each face at REFINE_SIDE px, so small faces in big photos get precise
    landmarks and non-square photos need no special handling.
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5):
        import mediapipe as mp

        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=max_faces, refine_landmarks=True,
                min_detection_confidence=min_confidence)

    def _run(self, rgb: np.ndarray) -> list[np.ndarray]:
        height, width = rgb.shape[:2]
        with quiet_native_stderr():
            result = self._mesh.process(np.ascontiguousarray(rgb))
        faces = []
        for face in result.multi_face_landmarks or []:
            points = np.array([[p.x * width, p.y * height, p.z * width] for p in face.landmark], dtype=np.float64)
            faces.append(points)
        return faces

    def detect(self, rgb: np.ndarray, refine: bool = True) -> list[DetectedFace]:
        """All faces in an RGB uint8 image (H, W, 3), largest first."""
        height, width = rgb.shape[:2]
        factor = min(1.0, DETECT_MAX_SIDE / max(height, width))
        small = rgb if factor == 1.0 else cv2.resize(rgb, (round(width * factor), round(height * factor)),
                                                      interpolation=cv2.INTER_AREA)
        coarse = [points / factor for points in self._run(small)]
        if not coarse:
            coarse = self._scan_tiles(rgb)
        faces = [self._refine(rgb, points) if refine else points for points in coarse]
        faces = [DetectedFace(points) for points in faces]
        return sorted(faces, key=lambda face: -face.size)

    def _scan_tiles(self, rgb: np.ndarray) -> list[np.ndarray]:
        """Look for faces too small for the whole-photo pass in overlapping tiles.

        MediaPipe's short-range detector sees the photo as a 128 px thumbnail, so a face
        under about a tenth of the photo's width is missed; tiles of 1/2, 1/3 and 1/4 of the
        shorter side (50% overlap, each resampled to at most DETECT_TILE_SIDE) bring such
        faces up to a size it finds. Runs only when the whole-photo pass found nothing.
        """
        height, width = rgb.shape[:2]
        found: list[np.ndarray] = []
        for divisor in (2, 3, 4):
            side = min(height, width) // divisor
            if side < 96:
                break
            step, scale = side // 2, min(1.0, DETECT_TILE_SIDE / side)
            for y in range(0, max(1, height - side) + 1, step):
                for x in range(0, max(1, width - side) + 1, step):
                    tile = rgb[y:y + side, x:x + side]
                    if scale < 1.0:
                        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                    for points in self._run(tile):
                        points = points / scale
                        points[:, :2] += (x, y)
                        center = points[:, :2].mean(0)
                        if all(np.linalg.norm(center - other[:, :2].mean(0)) > 0.2 * side for other in found):
                            found.append(points)
            if found:
                break
        return found

    def _refine(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        center = points[:, :2].mean(0)
        side = 2.0 * (points[:, :2].max(0) - points[:, :2].min(0)).max()
        scale = REFINE_SIDE / side
        # photo -> square crop of `side` px around the face, resampled to REFINE_SIDE
        matrix = np.array([[scale, 0.0, REFINE_SIDE / 2 - scale * center[0]],
                           [0.0, scale, REFINE_SIDE / 2 - scale * center[1]]])
        crop = cv2.warpAffine(rgb, matrix, (REFINE_SIDE, REFINE_SIDE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        refined = self._run(crop)
        if not refined:
            return points
        best = min(refined, key=lambda p: np.linalg.norm(p[:, :2].mean(0) - REFINE_SIDE / 2))
        best[:, :2] = (best[:, :2] - matrix[:, 2]) / scale
        best[:, 2] /= scale
        return best

    def close(self) -> None:
        self._mesh.close()
