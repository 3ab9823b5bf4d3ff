"""The aligned source face: a square crop laid out on the eyes and mouth, and its model."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workers.face.model import FaceModel
from workers.face.mouth import MouthReading, read_mouth

# Crop layout, in units of the face size d = max(2 x eye distance, 1.8 x eye-to-mouth):
# side = CROP_SIDE * d leaves room for hair and shoulders; the centre sits a little below
# the eyes so the chin and neck are well inside.
CROP_SIDE = 2.6
CENTER_BELOW_EYES = 0.3     # fraction of the eye-to-mouth vector


@dataclass
class AlignedFace:
    """A portrait ready to animate.

    Attributes:
        crop: (S, S, 3) uint8 RGB, face upright and centred.
        landmarks: (478, 3) landmarks in crop pixels.
        crop_from_photo: (2, 3) affine mapping photo pixels to crop pixels.
        photo: (H, W, 3) uint8 RGB original, kept for paste-back.
        model: the face in the latent space.
        face_px: face size in the original photo, pixels.
        mouth: what the photo's mouth shows (state, teeth, interior masks; workers.face.mouth).
    """

    crop: np.ndarray
    landmarks: np.ndarray
    crop_from_photo: np.ndarray
    photo: np.ndarray
    model: FaceModel
    face_px: float
    mouth: MouthReading


def crop_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """Affine (2, 3) photo->crop from landmarks (478, 3) in photo pixels (FFHQ-style)."""
    eye_right = landmarks[[33, 133], :2].mean(0)
    eye_left = landmarks[[263, 362], :2].mean(0)
    mouth = landmarks[[61, 291], :2].mean(0)
    eyes = (eye_right + eye_left) / 2
    eye_to_eye = eye_left - eye_right
    eye_to_mouth = mouth - eyes
    d = max(2.0 * np.linalg.norm(eye_to_eye), 1.8 * np.linalg.norm(eye_to_mouth))
    # The up direction blends the eye line and the eye-mouth line, robust to either alone.
    x_dir = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x_dir /= np.linalg.norm(x_dir)
    center = eyes + CENTER_BELOW_EYES * eye_to_mouth
    scale = size / (CROP_SIDE * d)
    cos, sin = x_dir * scale
    linear = np.array([[cos, sin], [-sin, cos]])
    offset = np.array([size / 2, size / 2]) - linear @ center
    return np.concatenate([linear, offset[:, None]], 1)


def align_face(photo: np.ndarray, landmarks: np.ndarray, size: int, face_px: float) -> AlignedFace:
    """Cut the aligned crop out of the photo and build the face model on it."""
    matrix = crop_transform(landmarks, size)
    crop = cv2.warpAffine(photo, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    points = np.empty_like(landmarks)
    points[:, :2] = landmarks[:, :2] @ matrix[:, :2].T + matrix[:, 2]
    points[:, 2] = landmarks[:, 2] * scale
    return AlignedFace(crop=crop, landmarks=points, crop_from_photo=matrix, photo=photo,
                       model=FaceModel.from_landmarks(points, size), face_px=face_px,
                       mouth=read_mouth(crop, points, photo.shape[:2], matrix))
