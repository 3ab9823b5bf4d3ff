"""The per-frame measures every QC path is built from: mouth opening, audio envelope, lip
sync, silences, lips on phones, eye aspect ratio and blinks; and :func:`measure_render`, the
static-image measurement of a render kept for bench/render.py.

Every number here comes from MediaPipe Face Mesh landmarks detected on the OUTPUT frames
(never from the motion latents or the decoder's control points), so it measures what a
viewer sees, including whatever the decoder and the h264 encode did to the mouth.

Units:
    mouth opening: inner-lip gap as a FRACTION OF MOUTH WIDTH (outer corners 61-291),
        so it does not depend on face size or frame resolution. A closed mouth reads
        about 0.00-0.03 on Face Mesh; an open vowel in natural speech 0.15-0.40.
    audio envelope: RMS level per video frame in dB relative to the clip's speech level
        (its 95th-percentile frame), floored at -60 dB.
    head rotation (measure_render): degrees between consecutive frames, mostly tracker noise on
        a still head; the QC's head motion is workers.quality.geometry.head_motion_intensity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.video import probe_video, read_frames
from workers.audio.decode import load_audio
from workers.audio.phonemes import BILABIALS, OPEN_VOWELS, align_transcript
from workers.face.topology import (
    LEFT_EYE_CORNERS,
    MOUTH_CORNERS_OUTER,
    RIGHT_EYE_CORNERS,
)
from workers.quality.geometry import head_motion
from workers.quality.tracking import found_fraction, track_landmarks

# Central inner-lip pairs (upper, lower): the midline and one either side of it.
INNER_LIP_PAIRS = ((13, 14), (82, 87), (312, 317))

# Thresholds on mouth_opening (fraction of mouth width). Face Mesh puts the inner lip lines
# of a closed (or lightly pressed) mouth within ~2 % of the mouth width of each other; on the
# real webcam face (tests) and on rendered frames at rest the closed cluster sits at 0.00-0.04.
# 0.06 is above that cluster with some margin for tracker jitter, and below the ~0.10+ of a
# visibly parted mouth (teeth or dark mouth interior showing at 512 px).
CLOSED_OPENING = 0.06
# An open vowel (AA, AE, AH, AO, AW, AY) in natural speech parts the lips by 15-40 % of
# the mouth width; 0.15 is the low end of that range.
OPEN_OPENING = 0.15

# Silence: frames this far below the speech level, this many frames from any speech frame.
SILENCE_BELOW_DB = 30.0
SPEECH_BELOW_DB = 20.0       # frames within 20 dB of the speech level count as speech
SILENCE_GUARD_FRAMES = 2
ENVELOPE_FLOOR_DB = -60.0

# Eye aspect ratio pairs (upper, lower) and corners per eye.
_RIGHT_EYE_PAIRS = ((160, 144), (159, 145), (158, 153))
_LEFT_EYE_PAIRS = ((387, 373), (386, 374), (385, 380))
# A blink: eye aspect ratio below 75 % of the clip's median. The one threshold of every QC
# path (talkfarm eval, the batch QC, bench/render.py), the one the QC tests and
# bench/qc_tracking.py were measured with: Face Mesh in tracking mode (the QC's tracker) never
# closes the lids fully, and real blinks on the webcam clip dip to 0.65-0.72 of the median, so
# the static-image detector's former 0.6 missed them all; open-eye noise stays above 0.8.
BLINK_EAR_FRACTION = 0.75


# ---------------------------------------------------------------------------- mouth

def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap as a fraction of mouth width, per frame.

    The gap is the mean over the three central inner-lip pairs (13/14, 82/87, 312/317) of the
    lower point's offset from the upper one, measured in the image plane perpendicular to the
    line through the outer mouth corners (so head roll does not read as opening). Divided by
    the corner-to-corner distance (61-291). Slightly negative values happen when the lips are
    pressed and the tracker crosses the lines.

    Args:
        landmarks: (T, 478, 3) or (478, 3) pixels.

    Returns:
        (T,) float64 (or a float for one frame); NaN where the landmarks are NaN.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    single = points.ndim == 2
    if single:
        points = points[None]
    xy = points[..., :2]
    right, left = xy[:, MOUTH_CORNERS_OUTER[0]], xy[:, MOUTH_CORNERS_OUTER[1]]
    axis = left - right
    width = np.linalg.norm(axis, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = axis / width[:, None]
        # image "down" for an upright face: the corner axis rotated +90 deg (x right, y down)
        down = np.stack([-unit[:, 1], unit[:, 0]], axis=-1)
        gaps = [np.sum((xy[:, lower] - xy[:, upper]) * down, axis=-1) for upper, lower in INNER_LIP_PAIRS]
        opening = np.mean(gaps, axis=0) / width
    return float(opening[0]) if single else opening


# ---------------------------------------------------------------------------- audio

def audio_envelope(wave16k: np.ndarray, fps: float, num_frames: int, sample_rate: int = 16000,
                   db: bool = True) -> np.ndarray:
    """RMS level of the audio over each video frame [i/fps, (i+1)/fps).

    dB is the default because jaw/lip opening follows loudness roughly logarithmically: a
    linear envelope is dominated by a few loud vowels, and its correlation with the mouth
    mostly measures those peaks. In dB, the scale is relative to the clip's speech level
    (the 95th-percentile frame = 0 dB) and floored at -60 dB, so recording gain and the
    noise floor of silences do not matter.

    Returns:
        (num_frames,) float64: dB re speech level in [-60, ~+5] (db=True), else linear RMS.
    """
    wave = np.asarray(wave16k, dtype=np.float64).reshape(-1)
    cumulative = np.concatenate([[0.0], np.cumsum(wave * wave)])
    bounds = np.minimum(np.round(np.arange(num_frames + 1) * (sample_rate / fps)).astype(np.int64), len(wave))
    counts = np.diff(bounds)
    mean_square = np.where(counts > 0, (cumulative[bounds[1:]] - cumulative[bounds[:-1]]) / np.maximum(counts, 1), 0.0)
    if not db:
        return np.sqrt(mean_square)
    return relative_envelope_db(10.0 * np.log10(np.maximum(mean_square, 1e-12)))


def relative_envelope_db(level_db: np.ndarray) -> np.ndarray:
    """Frame levels (any dB scale, e.g. dBFS) -> dB re the clip's speech level, floored.

    The speech level is the 95th-percentile frame (0 dB); the floor is ENVELOPE_FLOOR_DB
    (-60). Shared by :func:`audio_envelope` (levels from the waveform) and the batch QC
    (levels from ``AudioFeatures.energy_db``, the same frame RMS the audio stage computed),
    so both give the same envelope whatever the recording gain.

    Args:
        level_db: (T,) frame RMS levels in dB.

    Returns:
        (T,) float64 in [-60, ~+5].
    """
    level = np.asarray(level_db, dtype=np.float64)
    if level.size == 0:
        return level
    return np.maximum(level - np.percentile(level, 95), ENVELOPE_FLOOR_DB)


# ---------------------------------------------------------------------------- lip sync

def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    denom = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
    return float(np.dot(a, b) / denom) if denom > 0 else float("nan")


def lagged_correlations(opening: np.ndarray, envelope: np.ndarray, max_lag: int = 2) -> dict[int, float]:
    """Pearson r of opening[t + lag] with envelope[t] for lag in -max_lag..max_lag.

    A positive lag means the mouth moves ``lag`` frames AFTER the sound.
    """
    opening = np.asarray(opening, dtype=np.float64)
    envelope = np.asarray(envelope, dtype=np.float64)
    n = min(len(opening), len(envelope))
    opening, envelope = opening[:n], envelope[:n]
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            out[lag] = _pearson(opening[lag:], envelope[:n - lag])
        else:
            out[lag] = _pearson(opening[:n + lag], envelope[-lag:])
    return out


def best_correlation(correlations: dict[int, float]) -> tuple[float, int]:
    """(best r, its lag) of :func:`lagged_correlations`' output: the largest finite r, the
    smaller |lag| on a tie; (NaN, 0) when none is finite."""
    finite = {lag: r for lag, r in correlations.items() if np.isfinite(r)}
    if not finite:
        return float("nan"), 0
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
    return finite[best], int(best)


def lipsync_correlation(opening: np.ndarray, envelope: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """Best Pearson r between mouth opening and audio envelope over lags -max_lag..max_lag.

    Returns:
        (best_r, best_lag): the largest r and its lag in frames (positive: mouth after sound).
        NaNs in either series are skipped pairwise.
    """
    return best_correlation(lagged_correlations(opening, envelope, max_lag))


# ---------------------------------------------------------------------------- silence

@dataclass(frozen=True)
class SilenceClosure:
    """Mouth behaviour in pauses.

    Attributes:
        silent_frames: frames >= SILENCE_BELOW_DB under the speech level and at least
            SILENCE_GUARD_FRAMES frames from any speech frame.
        speech_frames: frames within SPEECH_BELOW_DB of the speech level.
        mean_opening_silence / mean_opening_speech: mean mouth_opening over those frames.
        closed_fraction: share of silent frames with opening < closed_threshold (NaN when
            there are no silent frames).
    """

    silent_frames: int
    speech_frames: int
    mean_opening_silence: float
    mean_opening_speech: float
    closed_fraction: float


def silence_closure(opening: np.ndarray, envelope_db: np.ndarray, silence_below_db: float = SILENCE_BELOW_DB,
                    speech_below_db: float = SPEECH_BELOW_DB, guard_frames: int = SILENCE_GUARD_FRAMES,
                    closed_threshold: float = CLOSED_OPENING) -> SilenceClosure:
    """Does the mouth close when nobody speaks?

    Args:
        opening: (T,) mouth_opening.
        envelope_db: (T,) frame level in dB; the speech level is its 95th percentile, so
            absolute or speech-relative dB both work.
    """
    opening = np.asarray(opening, dtype=np.float64)
    env = np.asarray(envelope_db, dtype=np.float64)
    n = min(len(opening), len(env))
    opening, env = opening[:n], env[:n]
    speech_level = np.percentile(env, 95)
    speech = env >= speech_level - speech_below_db
    near_speech = speech.copy()
    for shift in range(1, guard_frames + 1):
        near_speech[shift:] |= speech[:-shift]
        near_speech[:-shift] |= speech[shift:]
    silent = (env < speech_level - silence_below_db) & ~near_speech
    valid = np.isfinite(opening)
    sil, spk = silent & valid, speech & valid

    def mean(mask):
        return float(opening[mask].mean()) if mask.any() else float("nan")

    closed = float(np.mean(opening[sil] < closed_threshold)) if sil.any() else float("nan")
    return SilenceClosure(int(sil.sum()), int(spk.sum()), mean(sil), mean(spk), closed)


# ---------------------------------------------------------------------------- phones

@dataclass(frozen=True)
class PhoneArticulation:
    """Lip shapes on aligned phones.

    Attributes:
        bilabials: number of P/B/M phones measured.
        bilabial_closed_fraction: share whose minimum opening over the phone's frames (+-1
            frame) is below the closed threshold.
        open_vowels: number of open-vowel phones measured.
        open_vowel_open_fraction: share whose maximum opening over the phone's frames (+-1)
            reaches the open threshold.
        contrast: median opening over open-vowel frames minus median over bilabial frames
            (fraction of mouth width; natural speech: ~0.15-0.3).
        bilabial_min_median / open_vowel_max_median: medians of the per-phone min / max.
        target_r: Pearson r of the opening against the opening the phones call for (the
            coarticulated viseme targets of ``workers.motion.articulation``: jaw opening times
            one minus lip press) at the best lag within +-2 frames: does the mouth follow
            every phone, not only the loud ones.
    """

    bilabials: int
    bilabial_closed_fraction: float
    open_vowels: int
    open_vowel_open_fraction: float
    contrast: float
    bilabial_min_median: float
    open_vowel_max_median: float
    target_r: float = float("nan")


def phone_target_opening(phones: Sequence, fps: float, num_frames: int) -> np.ndarray:
    """(T,) opening the aligned ARPAbet phones call for, in [0, 1]: the viseme model's jaw
    opening with the lips' press taken off (closed on P/B/M, widest on open vowels)."""
    # imports torch (through the face model's latents): loaded only when phones are measured
    from workers.motion.articulation import MOUTH_CHANNELS, Phone, mouth_targets

    segments = [Phone(p.phone, p.start_s, p.end_s) for p in phones]
    targets = mouth_targets(segments, num_frames, fps, alphabet="arpabet")
    return targets[:, MOUTH_CHANNELS.index("jaw_open")] * (1.0 - targets[:, MOUTH_CHANNELS.index("lip_press")])


def _phone_frames(phone, fps: float, num_frames: int, margin: int) -> np.ndarray:
    first = int(math.floor(phone.start_s * fps)) - margin
    last = max(int(math.ceil(phone.end_s * fps)) - 1, int(math.floor(phone.start_s * fps))) + margin
    return np.arange(max(first, 0), min(last, num_frames - 1) + 1)


def phone_articulation(opening: np.ndarray, phones: Sequence, fps: float,
                       closed_threshold: float = CLOSED_OPENING, open_threshold: float = OPEN_OPENING,
                       margin_frames: int = 1) -> PhoneArticulation:
    """Do the lips close on P/B/M and part on open vowels?

    Args:
        opening: (T,) mouth_opening.
        phones: PhoneSegment-like objects (.phone, .start_s, .end_s), e.g. from
            workers.audio.phonemes.align_transcript.
        fps: video frame rate.
    """
    opening = np.asarray(opening, dtype=np.float64)
    n = len(opening)
    bil_min, vow_max, bil_frames, vow_frames = [], [], [], []
    for phone in phones:
        if phone.phone not in BILABIALS and phone.phone not in OPEN_VOWELS:
            continue
        wide = opening[_phone_frames(phone, fps, n, margin_frames)]
        core = opening[_phone_frames(phone, fps, n, 0)]
        wide, core = wide[np.isfinite(wide)], core[np.isfinite(core)]
        if wide.size == 0:
            continue
        if phone.phone in BILABIALS:
            bil_min.append(wide.min())
            bil_frames.extend(core)
        else:
            vow_max.append(wide.max())
            vow_frames.extend(core)

    def frac(values, test):
        return float(np.mean([test(v) for v in values])) if values else float("nan")

    def median(values):
        return float(np.median(values)) if len(values) else float("nan")

    target = phone_target_opening(phones, fps, n) if n else np.zeros(0)
    target_r = max((r for r in lagged_correlations(opening, target, 2).values() if np.isfinite(r)),
                   default=float("nan"))
    return PhoneArticulation(
        bilabials=len(bil_min),
        bilabial_closed_fraction=frac(bil_min, lambda v: v < closed_threshold),
        open_vowels=len(vow_max),
        open_vowel_open_fraction=frac(vow_max, lambda v: v >= open_threshold),
        contrast=median(vow_frames) - median(bil_frames),
        bilabial_min_median=median(bil_min),
        open_vowel_max_median=median(vow_max),
        target_r=float(target_r),
    )


# ---------------------------------------------------------------------------- eyes

def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """(T,) mean over both eyes of lid gap (3 pairs) / eye width (corner to corner)."""
    xy = np.asarray(landmarks, dtype=np.float64)[..., :2]
    ratios = []
    for pairs, corners in ((_RIGHT_EYE_PAIRS, RIGHT_EYE_CORNERS), (_LEFT_EYE_PAIRS, LEFT_EYE_CORNERS)):
        gap = np.mean([np.linalg.norm(xy[:, u] - xy[:, l], axis=-1) for u, l in pairs], axis=0)
        width = np.linalg.norm(xy[:, corners[0]] - xy[:, corners[1]], axis=-1)
        ratios.append(gap / width)
    return np.mean(ratios, axis=0)


def blink_rate(ear: np.ndarray, fps: float, fraction: float = BLINK_EAR_FRACTION) -> tuple[int, float]:
    """(blinks, blinks per minute): onsets of EAR dropping below ``fraction`` x its median."""
    ear = np.asarray(ear, dtype=np.float64)
    ok = np.isfinite(ear)
    if ok.sum() < 2:
        return 0, float("nan")
    closed = np.where(ok, ear < fraction * np.median(ear[ok]), False)
    onsets = int(np.sum(closed[1:] & ~closed[:-1]) + int(closed[0]))
    minutes = len(ear) / fps / 60.0
    return onsets, onsets / minutes if minutes > 0 else float("nan")


# ---------------------------------------------------------------------------- report

@dataclass
class QualityReport:
    """Quality numbers for one rendered video (see the module docstring for units)."""

    video: str
    frames: int
    fps: float
    face_found_fraction: float
    opening_p05: float
    opening_p50: float
    opening_p95: float
    lipsync_r: float
    lipsync_lag: int
    lipsync_r_by_lag: dict[int, float]
    silence: SilenceClosure
    phones: PhoneArticulation | None
    head_rotation_frame_to_frame_deg: float
    blinks: int
    blinks_per_minute: float
    tracking_seconds: float
    opening: np.ndarray = field(repr=False)
    envelope_db: np.ndarray = field(repr=False)

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("opening")
        out.pop("envelope_db")
        return out


def measure_render(video_path: str | Path, audio_path: str | Path, transcript: str | None = None,
                   refine: bool = False, detector=None) -> QualityReport:
    """Measure a rendered MP4 against the speech it was rendered from.

    Args:
        video_path: the rendered video (frames are decoded and tracked here).
        audio_path: the speech file given to the renderer (decoded to 16 kHz).
        transcript: English text of the speech; enables the phone articulation numbers.
        refine: see track_landmarks.
        detector: a FaceMeshDetector to reuse across calls.
    """
    info = probe_video(video_path)
    fps = float(info["fps"])
    frames = read_frames(video_path)
    started = time.perf_counter()
    landmarks = track_landmarks(frames, refine=refine, detector=detector)
    tracking_seconds = time.perf_counter() - started
    opening = mouth_opening(landmarks)
    wave = load_audio(audio_path)
    envelope = audio_envelope(wave, fps, len(frames))
    correlations = lagged_correlations(opening, envelope)
    r, lag = lipsync_correlation(opening, envelope)
    phones = None
    if transcript:
        phones = phone_articulation(opening, align_transcript(wave, transcript), fps)
    motion = head_motion(landmarks)
    blinks, per_minute = blink_rate(eye_aspect_ratio(landmarks), fps)
    finite = opening[np.isfinite(opening)]
    pct = np.percentile(finite, [5, 50, 95]) if finite.size else [float("nan")] * 3
    return QualityReport(
        video=str(video_path), frames=len(frames), fps=fps, face_found_fraction=found_fraction(landmarks),
        opening_p05=float(pct[0]), opening_p50=float(pct[1]), opening_p95=float(pct[2]),
        lipsync_r=r, lipsync_lag=lag, lipsync_r_by_lag=correlations,
        silence=silence_closure(opening, envelope), phones=phones,
        head_rotation_frame_to_frame_deg=float(np.nanmean(motion)) if np.isfinite(motion).any() else float("nan"),
        blinks=blinks, blinks_per_minute=per_minute, tracking_seconds=tracking_seconds,
        opening=opening, envelope_db=envelope,
    )
