"""Face Mesh landmarks on video frames: the tracking-mode tracker, the process's pool of idle
trackers, and the static-image detector for portraits and every-frame tracking."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workers.alignment.image import load_image
from workers.alignment.landmarks import FaceMeshDetector, quiet_native_stderr
from workers.quality.landmark_wire import landmark_array


class FaceTracker:
    """MediaPipe Face Mesh in video/tracking mode (one face), fed frames in time order.

    Tracking mode re-uses the previous frame's face box instead of re-detecting, about twice
    as fast as the static-image detector (3.4 vs 6.6 ms per frame on one CPU core); frames
    a few apart (a stride) are still close enough for the box to follow. Call :meth:`close`
    (or use as a context manager) to free the graph.
    """

    def __init__(self):
        import mediapipe as mp  # heavy (TFLite graphs): loaded when a tracker is first built

        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                                         refine_landmarks=False, min_detection_confidence=0.5)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(478, 3) float64 pixels (x, y, z; z in x's pixel scale) of the face in one (H, W, 3)
        uint8 RGB frame; all NaN with no face; iris points (468-477) always NaN (not tracked)."""
        frame = np.ascontiguousarray(frame)
        height, width = frame.shape[:2]
        out = np.full((478, 3), np.nan)
        with quiet_native_stderr():
            result = self._mesh.process(frame)
        if result.multi_face_landmarks:
            out[:468] = landmark_array(result.multi_face_landmarks[0]) * (width, height, width)
        return out

    def reset(self) -> None:
        """Forget the tracked face: the next frame is detected afresh, giving exactly the
        landmarks a new tracker would, without building the graph again.

        A black frame loses the face (the tracker's only state), one landmark pass, ~3 ms;
        restarting the graph costs ~14 ms of CPU, as its calculators load their models again.
        """
        if np.isfinite(self(np.zeros((64, 64, 3), np.uint8))).any():
            with quiet_native_stderr():
                self._mesh.reset()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Trackers of finished measurements, reset and kept for the next render in this process: a new
# graph costs ~35 ms of CPU (building it, its calculators loading their models, warm-up of the
# first frames) against ~3 ms for a reset, i.e. 0.3 ms a frame on a 4 s render, about as much
# as batch QC spends per frame on everything but Face Mesh.
MAX_IDLE_TRACKERS = 2
_idle_trackers: list[FaceTracker] = []
_idle_lock = threading.Lock()


def acquire_tracker() -> FaceTracker:
    """A :class:`FaceTracker` with no face tracked: an idle one of this process, else a new one.
    Give it back with :func:`release_tracker`."""
    with _idle_lock:
        if _idle_trackers:
            return _idle_trackers.pop()
    return FaceTracker()


def release_tracker(tracker: FaceTracker) -> None:
    """Reset ``tracker`` and keep it for :func:`acquire_tracker` (closed instead when
    MAX_IDLE_TRACKERS are already idle or the reset fails)."""
    try:
        tracker.reset()
    except Exception:  # noqa: BLE001 - a graph that cannot restart is only closed
        tracker.close()
        return
    with _idle_lock:
        if len(_idle_trackers) < MAX_IDLE_TRACKERS:
            _idle_trackers.append(tracker)
            return
    tracker.close()


def warm_up_tracker() -> None:
    """Import MediaPipe and build one Face Mesh graph now, kept idle for :func:`acquire_tracker`:
    for a worker's setup, so the first render it measures does not pay ~0.7 s for both (4 % of
    a 16-render benchmark job, bench/pipeline.py)."""
    tracker = acquire_tracker()
    tracker(np.zeros((64, 64, 3), np.uint8))
    release_tracker(tracker)


def track_video(frames: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """Face Mesh landmarks (:class:`FaceTracker`, one tracking session) on ``frames[indices]``.

    Returns:
        (T, 478, 3) pixels for ALL frames, NaN rows for frames not in ``indices`` or with no
        face; iris points (468-477) are NaN (not tracked).
    """
    indices = np.arange(len(frames)) if indices is None else np.asarray(indices)
    out = np.full((len(frames), 478, 3), np.nan)
    with FaceTracker() as tracker:
        for i in indices:
            out[i] = tracker(frames[i])
    return out


def portrait_landmarks(image_path: str | Path, detector=None) -> np.ndarray | None:
    """(478, 3) landmarks of the largest face in the portrait photo, or None if no face."""
    own = detector is None
    detector = detector or FaceMeshDetector(max_faces=4)
    try:
        faces = detector.detect(load_image(image_path), refine=True)
    finally:
        if own:
            detector.close()
    return faces[0].landmarks if faces else None


def track_landmarks(frames: np.ndarray | Sequence[np.ndarray], refine: bool = False,
                    detector=None) -> np.ndarray:
    """Face Mesh landmarks on every frame, each detected afresh (static-image mode).

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        refine: run the detector's second (re-cropped) pass. Rendered frames are 512x512 and
            face-centred, so the single pass already sees the face at full resolution;
            refine roughly doubles the cost for no measurable change (see BENCHMARKS.md).
        detector: an existing FaceMeshDetector to reuse (one is made and closed otherwise).

    Returns:
        (T, 478, 3) float64 pixels, rows of NaN where no face was found. Use
        ``found_fraction(landmarks)`` for the share of frames with a face.
    """
    own = detector is None
    if own:
        detector = FaceMeshDetector(max_faces=1)
    try:
        out = np.full((len(frames), 478, 3), np.nan)
        for i, frame in enumerate(frames):
            faces = detector.detect(np.ascontiguousarray(frame), refine=refine)
            if faces:
                out[i] = faces[0].landmarks
        return out
    finally:
        if own:
            detector.close()


def found_fraction(landmarks: np.ndarray) -> float:
    """Share of frames whose landmarks are finite."""
    if len(landmarks) == 0:
        return 0.0
    return float(np.mean(np.all(np.isfinite(landmarks.reshape(len(landmarks), -1)), axis=1)))


__all__ = ["FaceTracker", "MAX_IDLE_TRACKERS", "acquire_tracker", "release_tracker", "warm_up_tracker",
           "track_video", "portrait_landmarks", "track_landmarks", "found_fraction"]
