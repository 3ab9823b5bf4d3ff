"""What every render does in silences and with the eyelids, whichever generator ran.

Silences come from the voice activity detector (``AudioFeatures.speech_probability``,
silero-vad via ``workers.audio.vad.speech_mask``), not from loudness: breaths, room noise
and music are loud without being speech.

* **Mouth at rest:** in a silence of at least :data:`MIN_REST_S`, the mouth-opening channels
  (:data:`REST_CHANNELS`) ease (over :data:`EASE_S`) to the resting mouth of
  ``articulation.CLASSES["silence"]`` (lips together), on top of the photo's own mouth and the
  emotion offset.
* **Head settling:** there the head's pose follows a slow (``SETTLE_SIGMA_S``) smoothing of
  itself, so nods and jitter stop while the head still drifts.
* **Blinks:** people blink 10-30 times a minute in conversation (about 26 while talking).
  :func:`ensure_blinks` counts the generator's blinks and adds blinks into the longest
  blink-free stretches until there are at least :data:`MIN_BLINKS_PER_MINUTE` a minute,
  each at a pause start when one is near (people blink at phrase boundaries); a generator
  blinking more than :data:`MAX_BLINKS_PER_MINUTE` loses its most crowded blinks.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from workers.face.latents import DYN_SLICE, DYNAMICS, POSE_SLICE
from workers.motion.articulation import CLASSES, MOUTH_DYN_INDEX

VERSION = "silences-3"
# The mouth channels eased to rest: those that open the mouth. Pressing, stretching and
# rounding stay the generator's: real mouths keep small movements in pauses.
REST_CHANNELS = ("jaw_open", "lower_lip_depress")
MIN_REST_S = 0.3
EASE_S = 0.12
SETTLE_SIGMA_S = 0.4
SETTLE_WEIGHT = 0.5
# Small mouth movements at rest (real mouths are not frozen in pauses: THEval's silent-lip
# measure reads 0.026 on real video, 0.001 on renders with a fixed rest mouth): the opening
# channels drift by up to these amounts above the rest mouth, a slow smoothed noise
# (MICRO_SIGMA_S), staying under the closed-lip level (jaw 0.06) the eval and tests hold.
MICRO_JAW = 0.03
MICRO_LOWER_LIP = 0.04
MICRO_SIGMA_S = 0.2
MIN_BLINKS_PER_MINUTE = 15.0
MAX_BLINKS_PER_MINUTE = 30.0
# A blink is the mean lid closure rising through this level.
BLINK_LEVEL = 0.5
# Blinks closer than this are one blink; an added blink keeps this far from others.
MIN_BLINK_SPACING_S = 1.0
# An added blink moves to a pause start within this distance.
PAUSE_SNAP_S = 1.0
LIDS = (DYNAMICS.index("blink_left"), DYNAMICS.index("blink_right"))


def blink_profile(fps: float) -> np.ndarray:
    """(frames,) lid closure over one blink (0.28 s): a quick close, a slower open."""
    return np.interp(np.arange(0, 0.28, 1 / fps), [0.0, 0.06, 0.1, 0.18, 0.28], [0.2, 1.0, 0.9, 0.35, 0.0])


def rest_weight(speaking: np.ndarray, fps: float, min_s: float = MIN_REST_S, ease_s: float = EASE_S) -> np.ndarray:
    """(T,) in [0, 1]: 1 inside silences of at least ``min_s``, 0 in speech and in shorter
    pauses, eased in and out over ``ease_s`` inside the silence."""
    speaking = np.asarray(speaking, dtype=bool)
    weight = np.zeros(len(speaking))
    ease = max(1, int(round(ease_s * fps)))
    padded = np.concatenate([[True], speaking, [True]]).astype(np.int8)
    starts = np.flatnonzero(np.diff(padded) == -1)
    ends = np.flatnonzero(np.diff(padded) == 1)
    for start, end in zip(starts, ends):
        if end - start < min_s * fps:
            continue
        frames = np.arange(start, end)
        # Clip edges count as already silent: a clip opening on silence starts at rest.
        rise = np.ones(len(frames)) if start == 0 else np.clip((frames - start + 1) / ease, 0.0, 1.0)
        fall = np.ones(len(frames)) if end == len(speaking) else np.clip((end - frames) / ease, 0.0, 1.0)
        ramp = np.minimum(rise, fall)
        weight[start:end] = ramp * ramp * (3.0 - 2.0 * ramp)
    return weight


def rest_micro_motion(num_frames: int, fps: float, seed: int) -> dict[str, np.ndarray]:
    """{rest channel: (T,) offset in [0, its MICRO_* amount]}: slow smoothed noise, seeded."""
    rng = np.random.default_rng(seed + 104729)
    out = {}
    for name, amount in (("jaw_open", MICRO_JAW), ("lower_lip_depress", MICRO_LOWER_LIP)):
        noise = gaussian_filter1d(rng.standard_normal(num_frames + 1), max(MICRO_SIGMA_S * fps, 1.0), mode="wrap")[:num_frames]
        noise = noise / (noise.std() + 1e-9)
        out[name] = amount * np.clip(0.5 + 0.35 * noise, 0.0, 1.0)
    return out


def rest_in_silences(motion: np.ndarray, speaking: np.ndarray, fps: float, source_latent: np.ndarray,
                     emotion: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Motion (T, MOTION_DIM) with the mouth at rest and the head settled in silences.

    Args:
        motion: (T, MOTION_DIM) absolute motion latents.
        speaking: (T,) bool speech frames (``workers.audio.vad.speech_mask``).
        fps: frame rate.
        source_latent: (MOTION_DIM,) the photo's latent (its mouth is the rest mouth, jaw
            closed).
        emotion: (len(DYNAMICS),) expression offset the rest mouth keeps.
        seed: seed of the small rest movements (:func:`rest_micro_motion`).

    Returns:
        A new float32 array.
    """
    out = np.array(motion, dtype=np.float32, copy=True)
    weight = rest_weight(speaking, fps)[:, None]
    if len(out) == 0 or not weight.any():
        return out
    emotion = np.zeros(len(DYNAMICS)) if emotion is None else np.asarray(emotion, dtype=np.float64)
    rest_targets = CLASSES["silence"].target
    micro = rest_micro_motion(len(out), fps, seed)
    for k, index in enumerate(MOUTH_DYN_INDEX):
        if DYNAMICS[index] not in REST_CHANNELS:
            continue
        column = DYN_SLICE.start + index
        rest = 0.0 if DYNAMICS[index] == "jaw_open" else float(source_latent[column])
        target = rest + emotion[index] + rest_targets[k] + micro[DYNAMICS[index]]
        out[:, column] = (1.0 - weight[:, 0]) * out[:, column] + weight[:, 0] * target
    pose = out[:, POSE_SLICE].astype(np.float64)
    settled = gaussian_filter1d(pose, SETTLE_SIGMA_S * fps, axis=0, mode="nearest")
    out[:, POSE_SLICE] = (1.0 - SETTLE_WEIGHT * weight) * pose + SETTLE_WEIGHT * weight * settled
    return out


def blink_onsets(motion: np.ndarray, fps: float) -> np.ndarray:
    """Frames where the mean lid closure rises through BLINK_LEVEL (rises closer than
    MIN_BLINK_SPACING_S to the previous count once)."""
    lids = np.mean(np.asarray(motion)[:, [DYN_SLICE.start + index for index in LIDS]], axis=1)
    rising = np.flatnonzero((lids[1:] >= BLINK_LEVEL) & (lids[:-1] < BLINK_LEVEL)) + 1
    if len(lids) and lids[0] >= BLINK_LEVEL:
        rising = np.concatenate([[0], rising])
    kept: list[int] = []
    for frame in rising:
        if not kept or frame - kept[-1] >= MIN_BLINK_SPACING_S * fps:
            kept.append(int(frame))
    return np.array(kept, dtype=np.int64)


def ensure_blinks(motion: np.ndarray, speaking: np.ndarray, fps: float, seed: int) -> np.ndarray:
    """Motion with at least ceil(MIN_BLINKS_PER_MINUTE * minutes) blinks (see the module doc).

    Each added blink goes into the longest blink-free stretch (clip edges count as half a
    stretch, so a blink is not crammed at the start), at the pause start nearest its middle
    within PAUSE_SNAP_S, else at the middle jittered by up to a quarter of the stretch.
    Blinks the generator made are kept, up to MAX_BLINKS_PER_MINUTE (``_limit_blinks``).
    """
    out = np.array(motion, dtype=np.float32, copy=True)
    n = len(out)
    if n == 0:
        return out
    rng = np.random.default_rng(seed + 7919)
    speaking = np.asarray(speaking, dtype=bool)
    pause_starts = np.flatnonzero(speaking[:-1] & ~speaking[1:]) + 1
    profile = blink_profile(fps)
    needed = int(np.ceil(MIN_BLINKS_PER_MINUTE * n / fps / 60.0 - 1e-9))
    onsets = sorted(blink_onsets(out, fps).tolist())
    spacing = MIN_BLINK_SPACING_S * fps
    while len(onsets) < needed:
        # Stretches between blinks; an edge stretch counts double its length as a gap.
        bounds = [-len(profile)] + onsets + [n]
        best, best_score = None, 0.0
        for left, right in zip(bounds[:-1], bounds[1:]):
            low, high = left + spacing if left >= 0 else 0, right - spacing if right < n else n - len(profile)
            if high <= low:
                continue
            score = (right - left) * (2.0 if left < 0 or right >= n else 1.0)
            if score > best_score:
                best, best_score = (low, high, left, right), score
        if best is None:
            break
        low, high, left, right = best
        middle = (max(left, 0) + min(right, n)) / 2.0
        near = pause_starts[(pause_starts >= low) & (pause_starts <= high) & (np.abs(pause_starts - middle) <= PAUSE_SNAP_S * fps)]
        if len(near):
            frame = int(near[np.argmin(np.abs(near - middle))])
        else:
            frame = int(np.clip(round(middle + rng.uniform(-0.25, 0.25) * (high - low)), low, high))
        end = min(n, frame + len(profile))
        for index in LIDS:
            column = out[frame:end, DYN_SLICE.start + index]
            column += (profile[: end - frame] * (1.0 - column.clip(0, 1))).astype(np.float32)
        onsets = sorted(onsets + [frame])
    return _limit_blinks(out, fps, int(np.floor(MAX_BLINKS_PER_MINUTE * n / fps / 60.0 + 1e-9)))


def _limit_blinks(motion: np.ndarray, fps: float, most: int) -> np.ndarray:
    """Motion with the generator's blinks beyond ``most`` taken out (at least one kept): the
    most crowded blink (nearest its neighbours) goes first; its lids follow a straight line
    between the open levels either side. The diffusion model blinks 4 times in LibriVox's 7 s
    (34 a minute, counted on the frames at 512 px); people blink 10-30."""
    out = motion
    lids_columns = [DYN_SLICE.start + index for index in LIDS]
    while True:
        onsets = blink_onsets(out, fps)
        if len(onsets) <= max(most, 1):
            return out
        gaps = np.diff(np.concatenate([[-np.inf], onsets, [np.inf]]))
        crowded = int(np.argmin(np.minimum(gaps[:-1], gaps[1:])))
        lids = out[:, lids_columns].mean(axis=1)
        open_level = float(np.percentile(lids, 20))
        start = end = int(onsets[crowded])
        while start > 0 and lids[start - 1] > open_level + 0.05:
            start -= 1
        while end < len(lids) - 1 and lids[end] > open_level + 0.05:
            end += 1
        for column in lids_columns:
            left, right = out[max(start - 1, 0), column], out[end, column]
            out[start:end, column] = np.linspace(left, right, end - start + 2)[1:-1]
