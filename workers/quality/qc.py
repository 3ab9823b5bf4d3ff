"""Automatic quality control of rendered talking-face videos: the entry points.

Everything is measured on the OUTPUT video's own frames (MediaPipe Face Mesh in
video/tracking mode on frames scaled to <= 256 px) and on the speech, never on the latents
that made the video. :func:`evaluate` is the full measurement behind ``talkfarm eval`` (a
file decoded, every frame tracked); :class:`BatchQC` is the same measurement (one
implementation, :class:`~workers.quality.streaming.StreamingQC`) on the frames the encoder
writes, fed chunk by chunk while the video is encoded (nothing decoded again), with Face Mesh
on every 8th frame only and the mouth and eyes of the frames between read from small patches
calibrated against those (:mod:`workers.quality.patches`), cheap enough to run on every render
of a batch job; :func:`qc_for_batch` does that on a video file.

Metrics, units, reference ranges and what batch tracking changes (measured):
workers/quality/README.md; figures per machine: BENCHMARKS.md.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from core.video import decode_scaled
from workers.audio.decode import load_audio
from workers.quality.frames import DECODE_MAX_SIDE
from workers.quality.streaming import QCResult, StreamingQC, json_safe
from workers.quality.thresholds import QualityThresholds
from workers.quality.tracking import portrait_landmarks


def evaluate_frames(frames: np.ndarray, fps: float, wave16k: np.ndarray | None = None,
                    portrait: np.ndarray | None = None, transcript: str | None = None, stride: int = 1,
                    container_seconds: float | None = None, thresholds: QualityThresholds | None = None,
                    thumbs: int = 12, max_side: int | None = None, patches: bool = False,
                    flicker_every: int = 1) -> QCResult:
    """All metrics on decoded frames (workers/quality/README.md): a :class:`StreamingQC` fed
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
    frames, info = decode_scaled(video_path, max_side)
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
    return {"quality_json": json.dumps(json_safe(metrics), sort_keys=True), "quality_flags": list(flag_list)}


__all__ = ["BATCH_STRIDE", "BatchQC", "evaluate", "evaluate_frames", "qc_for_batch", "manifest_quality_columns"]
