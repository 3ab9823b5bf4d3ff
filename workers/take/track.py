"""Tracking the actor's face through a take: one face, followed frame to frame.

MediaPipe Face Mesh in video mode (detection on the first frame, then landmark tracking from
each frame's result, detection again when the track is lost) with 478 landmarks. A shot cut
(the picture changes at once) restarts the mesh, so the face is detected afresh in the new
shot rather than tracked from a region that now shows something else. With several faces
the ``face``-th largest is taken when a shot starts and then followed by position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from core.errors import BadInputError
from core.take import (
    FRAME_DUBBED,
    FRAME_FACE_TOO_SMALL,
    FRAME_MOUTH_OCCLUDED,
    FRAME_NO_FACE,
    FRAME_PROFILE,
    FRAME_STATUS_NAMES,
    TakeTrack,
)
from workers.alignment.face import AlignedFace, align_face, crop_transform
from workers.alignment.landmarks import DetectedFace, quiet_native_stderr
from workers.face.latents import MOTION_DIM, euler_from_matrix
from workers.face.model import frontal_frame
from workers.face.mouth import read_mouth
from workers.face.topology import NUM_LANDMARKS
from workers.take.mouth_bank import MouthBankBuilder
from workers.take.reader import MIN_DECODED_FRACTION, probe_take, read_take

TRACKER_VERSION = "mediapipe-face-mesh-0.10.21-video-2"   # 2: a trimmed take tracked to the speech's end
# Mean absolute change of a 32x32 grey thumbnail (0-255) from one frame to the next above
# which a new shot has started. A talking head moving fast changes it by ~3-8.
CUT_THRESHOLD = 28.0
MAX_FACES = 4
MIN_FACE_PX = 64
# Beyond this head yaw (degrees) the face is in profile: the far half of the mouth is hidden
# and the rig, built frontal, does not hold it.
MAX_YAW_DEG = 40.0
# Side of the crop the mouth's visibility is read on (the reader's measures are relative).
OCCLUSION_CROP = 256
# Frames tracked past the new speech's end (stated by its header) when the dub ends with it: the
# audio stage's frame count is its decoded length at the take's rate, within a frame of the header's.
SPEECH_MARGIN_S = 0.2


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """(32, 32) float32 grey thumbnail of an RGB frame, for cut detection."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def is_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    return previous is not None and float(np.abs(current - previous).mean()) > CUT_THRESHOLD


@dataclass(frozen=True)
class FrameFace:
    """One frame's tracked face: landmarks (478, 3) in frame pixels or None, and its status
    (``core.take.FRAME_*``), its head yaw and pitch (degrees; 0 without a face), and whether
    its mouth shows teeth."""

    landmarks: np.ndarray | None
    status: int
    yaw: float = 0.0
    pitch: float = 0.0
    teeth: bool = False


class FaceTracker:
    """Follows one face through consecutive frames of a take.

    Args:
        face: which face a shot starts with: 0 the largest, 1 the next largest, ...
    """

    def __init__(self, face: int = 0):
        import mediapipe as mp

        self._solution = mp.solutions.face_mesh
        self.face = face
        self._mesh = None
        self._previous_thumb: np.ndarray | None = None
        self._previous_center: np.ndarray | None = None
        self.cut = False

    def _open(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
        with quiet_native_stderr():
            self._mesh = self._solution.FaceMesh(static_image_mode=False, max_num_faces=MAX_FACES,
                                                 refine_landmarks=True, min_detection_confidence=0.5,
                                                 min_tracking_confidence=0.5)
        self._previous_center = None

    def track(self, frame: np.ndarray) -> np.ndarray | None:
        """The followed face's landmarks (478, 3) in frame pixels in this RGB frame, or None.

        ``self.cut`` tells whether this frame started a new shot.
        """
        thumb = thumbnail(frame)
        self.cut = is_cut(self._previous_thumb, thumb)
        self._previous_thumb = thumb
        if self._mesh is None or self.cut:
            self._open()
        height, width = frame.shape[:2]
        with quiet_native_stderr():
            result = self._mesh.process(np.ascontiguousarray(frame))
        faces = [np.array([[p.x * width, p.y * height, p.z * width] for p in face.landmark])
                 for face in result.multi_face_landmarks or []]
        if not faces:
            self._previous_center = None
            return None
        if self._previous_center is None:
            ranked = sorted(faces, key=lambda points: -DetectedFace(points).size)
            if self.face >= len(ranked):
                return None
            chosen = ranked[self.face]
        else:
            chosen = min(faces, key=lambda points: np.linalg.norm(points[:, :2].mean(0) - self._previous_center))
        self._previous_center = chosen[:, :2].mean(0)
        return chosen.astype(np.float32)

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


def classify(frame: np.ndarray, landmarks: np.ndarray | None) -> FrameFace:
    """Whether a frame's face can be dubbed: no face, too small, in profile, mouth covered."""
    if landmarks is None:
        return FrameFace(None, FRAME_NO_FACE)
    face = DetectedFace(landmarks)
    points = landmarks.astype(np.float64)
    rotation, _, _ = frontal_frame(points)
    yaw, pitch, _ = euler_from_matrix(rotation)
    if face.size < MIN_FACE_PX:
        return FrameFace(landmarks, FRAME_FACE_TOO_SMALL, yaw, pitch)
    if abs(yaw) > MAX_YAW_DEG:
        return FrameFace(landmarks, FRAME_PROFILE, yaw, pitch)
    matrix = crop_transform(points, OCCLUSION_CROP)
    crop = cv2.warpAffine(frame, matrix, (OCCLUSION_CROP, OCCLUSION_CROP), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
    in_crop = crop_points(points, matrix)
    mouth = read_mouth(crop, in_crop, frame.shape[:2], matrix)
    if mouth.hidden is not None:
        return FrameFace(landmarks, FRAME_MOUTH_OCCLUDED, yaw, pitch)
    return FrameFace(landmarks, FRAME_DUBBED, yaw, pitch, mouth.teeth_visible)


def crop_points(landmarks: np.ndarray, crop_from_frame: np.ndarray) -> np.ndarray:
    """Landmarks (N, 3) in frame pixels -> crop pixels by the (2, 3) affine (z scaled alike)."""
    scale = float(np.sqrt(abs(np.linalg.det(crop_from_frame[:, :2]))))
    points = np.empty_like(landmarks, dtype=np.float64)
    points[:, :2] = landmarks[:, :2] @ crop_from_frame[:, :2].T + crop_from_frame[:, 2]
    points[:, 2] = landmarks[:, 2] * scale
    return points


def track_take(path: str, face: int, max_crop: int, max_seconds: float,
               speech_seconds: float | None = None) -> tuple[TakeTrack, AlignedFace]:
    """Track the ``face``-th face through the take at ``path`` (streamed, a batch at a time);
    with ``speech_seconds`` (a dub that ends with its speech) only the frames up to its end plus
    ``SPEECH_MARGIN_S``: the track's ``num_frames`` is then that many where the take is longer.

    Returns the track (landmarks, statuses and own latents per frame, crop size: the face's own
    resolution, at most ``max_crop``; the take's own open mouths, ``workers.take.mouth_bank``)
    and the take's reference face: its most frontal dubbable frame, aligned, whose face model
    reads every frame's own motion.

    Raises:
        BadInputError: not a video, unreadable or truncated, too long, or no dubbable face.
    """
    info = probe_take(path, max_seconds)
    wanted = None if speech_seconds is None else math.ceil((speech_seconds + SPEECH_MARGIN_S) * info.fps)
    tracker = FaceTracker(face)
    landmarks, status, cuts = [], [], []
    bank = MouthBankBuilder()
    reference: tuple[float, np.ndarray, np.ndarray] | None = None     # (|yaw| + |pitch|, frame, landmarks)
    try:
        for batch in read_take(path, info, count=wanted):
            for frame in batch:
                found = classify(frame, tracker.track(frame))
                if tracker.cut:
                    cuts.append(len(status))
                landmarks.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32) if found.landmarks is None
                                 else found.landmarks)
                status.append(found.status)
                turn = abs(found.yaw) + abs(found.pitch)
                if found.status == FRAME_DUBBED:
                    bank.offer(len(status) - 1, frame, found.landmarks, turn, found.teeth)
                if found.status == FRAME_DUBBED and (reference is None or turn < reference[0]):
                    reference = (turn, frame.copy(), found.landmarks)
    finally:
        tracker.close()
    frames = len(status)
    expected = min(info.expected_frames, wanted or info.expected_frames)
    if frames < max(2, MIN_DECODED_FRACTION * expected):
        raise BadInputError(f"the take is truncated or corrupt: {frames} of its {expected} frames "
                            "could be decoded", path)
    codes = np.array(status, np.uint8)
    if reference is None:
        if (codes == FRAME_NO_FACE).all():
            which = f"face {face} (0 is the largest) not" if face else "no face"
            raise BadInputError(f"{which} found in any frame of the take", path)
        counts = ", ".join(f"{int((codes == code).sum())} {name.replace('_', ' ')}"
                           for code, name in FRAME_STATUS_NAMES.items() if code != FRAME_DUBBED and (codes == code).any())
        raise BadInputError(f"no frame of the take shows a face that can be dubbed ({counts})", path)
    _, frame, points = reference
    crop_size = face_crop_size(points, max_crop)
    face_px = float((points[:, :2].max(0) - points[:, :2].min(0)).max())
    aligned = align_face(frame, points.astype(np.float64), crop_size, face_px)
    stacked = np.stack(landmarks)
    own = np.zeros((frames, MOTION_DIM), np.float32)
    dubbed = np.flatnonzero(codes == FRAME_DUBBED)
    in_crop = np.stack([crop_points(stacked[i].astype(np.float64), crop_transform(stacked[i].astype(np.float64), crop_size))
                        for i in dubbed])
    own[dubbed] = aligned.model.encode(in_crop)
    track = TakeTrack(path=str(path), fps=info.fps, width=info.width, height=info.height, num_frames=frames,
                      crop_size=crop_size, landmarks=stacked, status=codes, own=own, cuts=cuts, colour=info.colour,
                      mouth_bank=bank.bank())
    return track, aligned


def face_crop_size(landmarks: np.ndarray, max_crop: int) -> int:
    """Side of the per-frame face crop: the pixels the crop covers in the frame (no upsampling
    of a small face, whose detail the frame does not have), even, within [128, ``max_crop``]."""
    scale = float(np.sqrt(abs(np.linalg.det(crop_transform(landmarks.astype(np.float64), 1)[:, :2]))))
    native = 1.0 / max(scale, 1e-9)
    return int(np.clip(round(native / 2) * 2, 128, max_crop))
