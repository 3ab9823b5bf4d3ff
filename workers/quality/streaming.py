"""The QC measurement itself: a video's frames fed in order, a chunk at a time
(:class:`StreamingQC`), turned into metrics, flags and curves (:class:`QCResult`).

Metrics, units and reference ranges: workers/quality/README.md.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from core.video import scaled_size
from workers.audio.phonemes import align_transcript
from workers.audio.vad import speech_mask, speech_probability
from workers.quality.flicker import FlickerMeter
from workers.quality.frames import DECODE_MAX_SIDE, fit_frame
from workers.quality.geometry import (
    head_motion_intensity,
    head_pose_angles,
    identity_drift,
    landmark_jitter,
)
from workers.quality.measure import (
    audio_envelope,
    best_correlation,
    blink_rate,
    eye_aspect_ratio,
    lagged_correlations,
    mouth_opening,
    phone_articulation,
    relative_envelope_db,
    silence_closure,
)
from workers.quality.patches import FacePatches, calibrate
from workers.quality.theval import naturalness
from workers.quality.thresholds import DEFAULT_THRESHOLDS, QualityThresholds
from workers.quality.tracking import FaceTracker, acquire_tracker, release_tracker

LIP_MAX_LAG = 5                 # frames searched either side for the best lip-sync lag
STILL_MOUTH_RANGE = 0.01        # opening p95 - p5 (mouth widths) below this: the mouth never moves
# Frames Face Mesh sees just before each tracked frame with stride > PRIMING_FRAMES (StreamingQC.add)
PRIMING_FRAMES = 2


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
        return json.dumps(json_safe(self.metrics) | {"flags": self.flags}, indent=2, sort_keys=True)


def json_safe(metrics: dict) -> dict:
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
        """All metrics (workers/quality/README.md) of the frames added, against the speech.

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
                m["lipsync_r"], m["lipsync_lag_frames"] = best_correlation(correlations)
                m["lipsync_r_lag0"] = correlations.get(0, float("nan"))
                silence = silence_closure(opening, envelope)
                m.update(silent_frames=silence.silent_frames, silence_closed_fraction=silence.closed_fraction,
                         opening_silence=silence.mean_opening_silence, opening_speech=silence.mean_opening_speech)
            if transcript and wave16k is not None:
                phones = phone_articulation(opening, align_transcript(wave16k, transcript), fps)
                m.update(bilabials=phones.bilabials, bilabial_closed_fraction=phones.bilabial_closed_fraction,
                         open_vowels=phones.open_vowels, open_vowel_open_fraction=phones.open_vowel_open_fraction,
                         articulation_contrast=phones.contrast, articulation_target_r=phones.target_r)
        m["head_motion_deg_per_frame"] = head_motion_intensity(landmarks, stride)
        pose = head_pose_angles(landmarks)
        spans = [_nan_stat(pose[:, k], lambda v: np.percentile(v, 95) - np.percentile(v, 5)) for k in range(3)]
        m.update(yaw_range_deg=spans[0], pitch_range_deg=spans[1], roll_range_deg=spans[2],
                 head_range_deg=max((s for s in spans if math.isfinite(s)), default=float("nan")))
        speech = None
        if wave16k is not None and len(wave16k) and n:
            speech = np.zeros(n, bool)
            heard = speech_mask(speech_probability(wave16k, fps), fps)[:n]
            speech[:len(heard)] = heard
        m.update(naturalness(landmarks, pose, fps, stride, envelope if audio_seconds is not None else None, speech))
        # with patches the eye aspect ratio is known on every frame, else on the tracked ones
        if self._patches is not None:
            blinks, per_minute = blink_rate(ear, fps)
        else:
            blinks, per_minute = blink_rate(ear[::stride], fps / stride)
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
        result = QCResult(metrics=json_safe(m), flags=[], opening=opening, envelope_db=envelope, pose=pose,
                          thumbs=thumbs, thumb_index=thumb_index)
        result.flags = (self.thresholds or DEFAULT_THRESHOLDS).flags(result)
        return result


__all__ = ["QCResult", "StreamingQC", "json_safe", "LIP_MAX_LAG", "PRIMING_FRAMES"]
