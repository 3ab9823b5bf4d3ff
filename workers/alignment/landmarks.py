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
        faces = [self._refine(rgb, points) if refine else points for points in coarse]
        faces = [DetectedFace(points) for points in faces]
        return sorted(faces, key=lambda face: -face.size)

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
