"""Transcript-aware mouth correction: aligned phones -> visemes blended into the motion.

Any generator's motion latents (head pose, expression, blinks, gaze: all still from the
audio) keep every channel but the six mouth channels of
``workers.motion.articulation.MOUTH_CHANNELS``; those are blended toward the coarticulated
viseme targets of the aligned phones (``mouth_targets``: Cohen-Massaro dominance blending,
rounding, jaw height by vowel), and fully replaced on the enforced bilabial closures, so the
lips meet on every p / b / m of the transcript.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter1d

from workers.audio.cues import smoothstep
from workers.face.latents import DYN_SLICE, DYNAMICS
from workers.motion.articulation import (
    CLOSED_PRESS,
    LIP_LEAD_S,
    MOUTH_CHANNELS,
    MOUTH_DYN_INDEX,
    Phone,
    mouth_targets,
)
from workers.motion.silences import rest_weight

# Share of the viseme target in the blended mouth channels (1 - this stays from the audio).
VISEME_WEIGHT = 0.8
VERSION = "visemes-5"
# On the enforced p / b / m closures the lips are shut harder than the training targets'
# CLOSED_PRESS / CLOSED_JAW (0.95 / 0.06): measured on rendered frames (bench/rendered_heldout.py,
# Eileen Collins, whose photo smiles) a one-frame closure at those values reads 0.063-0.08 of the
# mouth width, above talkfarm eval's 0.06 "closed"; the procedural rest (press 1.0, jaw 0.02)
# reads 0.044. A closure also lasts at least CLOSURE_MIN_S (real bilabial closures: 60-120 ms;
# 3 frames at 25 fps), so a short aligned /b/ is not one frame between two open ones.
CLOSURE_PRESS = 1.0
CLOSURE_JAW = 0.0
CLOSURE_MIN_S = 0.12
# Where a short closure's frames go (visemes-4; with the level known): the quietest
# CLOSURE_MIN_S window from one frame before the bilabial's closed middle to GAP_REACH frames
# after its end, i.e. the silent gap of a stop before its burst or an /m/'s murmur. Lengthened
# forward (visemes-3) the lips stayed shut over the burst and the loud vowel it opens into
# ("by": shut at -1 dB re the speech level), and closures on loud frames were the largest
# share of what lip r lost on p / b / m-rich prompts (BENCHMARKS.md issue 19 round 6). The
# bilabial's middle frames the window leaves are its release: press at most RELEASE_PRESS.
# The window stays where talkfarm eval looks for the closure (the phone's frames +- 1).
GAP_REACH = 2
RELEASE_PRESS = 0.5
# A nasal's closure (/m/, visemes-5) is its murmur: sound leaves through the nose while the
# lips are shut, so its frames are loud (-2 .. -10 dB re the speech level on the tuning and
# LibriVox prompts) and every frame the lips stay shut beyond the murmur is a shut mouth on a
# loud vowel. A short /m/ is shut for NASAL_CLOSURE_MIN_S (two frames at 25 fps, the
# murmur's own 60-90 ms), placed like a stop's closure in its quietest frames; a stop keeps
# CLOSURE_MIN_S (its silent gap and the burst's approach). On the tuning prompts (allison,
# clean and under a -28 dB noise floor) lip r +0.00 .. +0.04 with every p / b / m still read
# closed as before; 80 ms closures for stops too lost closures (round 6).
NASAL_CLOSURE_MIN_S = 0.08
NASALS = ("m", "em", "m\u0329")
# Lips together in pauses (visemes-4): frames whose smoothed level is PAUSE_DB or more under
# the speech level get lip_press PAUSE_PRESS, easing to none at PAUSE_EDGE_DB. With the
# silence target's light press the smiling photo's lips parted in pauses and trailing
# silences as much as on a closure or more (0.05-0.07 of the mouth width on the rendered
# tuning clips, 0.04-0.06 now), against the loudness envelope's lowest frames.
PAUSE_PRESS = 1.0
PAUSE_DB = -40.0
PAUSE_EDGE_DB = -25.0
# ... and wherever the voice activity detector hears no speech (visemes-5): a pause at a
# recording's noise floor (-21 .. -33 dB re the speech level on 64 kb/s LibriVox readings) is
# above PAUSE_EDGE_DB, so the level alone left the lips parted there (0.05-0.06 of the mouth
# width), more open than on the loud /m/ closures beside it. The press eases in and out over
# VAD_PAUSE_EASE_S inside each non-speech run (``speech_mask`` already bridges gaps under
# 0.2 s and pads speech by 60 ms, so the lips part just before the sound).
VAD_PAUSE_EASE_S = 0.08
# The jaw also opens by LOUD_JAW x the loudness (0 at QUIET_DB, 1 at LOUD_DB), whatever the
# phone (visemes-4): loud close vowels (/i/, /u/) and loud consonants stayed as narrow as
# their phone's target, which only scales (opening_gain); speakers drop the jaw on loud
# syllables whatever the vowel.
LOUD_JAW = 0.3
# Loudness scaling of the opening channels (see opening_gain): speakers open wider on loud,
# stressed syllables and articulate smaller on quiet, reduced ones and in breath pauses. The
# phone sets the mouth's shape, the level relative to the clip's speech level (its 95th
# percentile frame) how far it opens: GAIN_QUIET at QUIET_DB and below, GAIN_LOUD at LOUD_DB
# and above. A gain that never went under 1 (visemes-2: 1 -> 2 over -32 .. -8 dB) left quiet
# consonants and short pauses as open as the phone's target, so the mouth followed loudness
# less than procedural's loudness-driven jaw (lip r 0.53 against 0.67 on the rendered
# held-out clips, BENCHMARKS.md issue 19 round 5; 0.4 -> 1.6 over -30 .. -4 dB gave 0.55,
# 0 -> 2 over -24 .. 0 dB 0.66, over -20 .. 0 dB 0.69 with less contrast between open vowels
# and closures (0.100), over -24 .. -4 0.66 / 0.113; these 0.68 / 0.105).
OPENING_CHANNELS = ("jaw_open", "lower_lip_depress")
GAIN_QUIET = 0.0
GAIN_LOUD = 2.0
QUIET_DB = -22.0
LOUD_DB = -2.0
# The level is smoothed over this many frames (sigma at 25 fps): a jaw cannot follow
# frame-to-frame flicker of the RMS level.
LEVEL_SMOOTH_FRAMES = 0.8


def relative_level(energy_db: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(T,) frame level in dB re the clip's speech level (its 95th-percentile frame),
    smoothed over LEVEL_SMOOTH_FRAMES."""
    energy = np.asarray(energy_db, dtype=np.float64)
    if energy.size > 1:
        energy = gaussian_filter1d(energy, LEVEL_SMOOTH_FRAMES * fps / 25.0, mode="nearest")
    return energy - np.percentile(energy, 95) if energy.size else energy


def opening_gain(energy_db: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(T,) scale of the mouth-opening targets from loudness: GAIN_QUIET in quiet stretches
    up to GAIN_LOUD on the loudest syllables (stressed vowels open wider)."""
    if np.asarray(energy_db).size == 0:
        return np.ones(0)
    return GAIN_QUIET + (GAIN_LOUD - GAIN_QUIET) * smoothstep(QUIET_DB, LOUD_DB, relative_level(energy_db, fps))


def pause_weight(energy_db: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(T,) in [0, 1]: 1 where the level is PAUSE_DB or more under the speech level (lips
    together), 0 from PAUSE_EDGE_DB up."""
    if np.asarray(energy_db).size == 0:
        return np.zeros(0)
    return 1.0 - smoothstep(PAUSE_DB, PAUSE_EDGE_DB, relative_level(energy_db, fps))


def vad_pause_weight(speaking: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(T,) in [0, 1]: 1 inside the VAD's non-speech runs (any length ``speech_mask`` leaves),
    easing to 0 at their edges over VAD_PAUSE_EASE_S (clip edges count as silent)."""
    return rest_weight(speaking, fps, min_s=0.0, ease_s=VAD_PAUSE_EASE_S)


def apply_visemes(motion: np.ndarray, phones: Sequence[Phone], fps: float, source_latent: np.ndarray,
                  emotion: np.ndarray | None = None, weight: float | None = None,
                  energy_db: np.ndarray | None = None, speaking: np.ndarray | None = None) -> np.ndarray:
    """Mouth channels of ``motion`` corrected toward the phones' visemes.

    Args:
        motion: (T, MOTION_DIM) motion latents from a generator.
        phones: aligned phones (IPA or ARPAbet), times in seconds.
        fps: video frame rate.
        source_latent: (MOTION_DIM,) latent of the photo; its mouth channels (jaw_open
            excepted, which generators drive from zero) are the rest position the targets
            are added to, as in the training targets of ``jobs.corpus.targets``.
        emotion: (len(DYNAMICS),) expression offset, also added to the targets.
        weight: share of the viseme target, in [0, 1].
        energy_db: (T,) frame loudness (``AudioFeatures.energy_db``): scales the opening
            channels (jaw_open, lower_lip_depress) by :func:`opening_gain`, opens the jaw by
            LOUD_JAW with the loudness, presses the lips in pauses (:func:`pause_weight`) and
            places short closures in the bilabial's quietest frames. None: none of these
            (closures lengthened forward).
        speaking: (T,) bool speech frames of the voice activity detector
            (``workers.audio.vad.speech_mask``): the lips are pressed together outside them
            (:func:`vad_pause_weight`). None: only the level's pauses are pressed.

    Returns:
        A new (T, MOTION_DIM) float32 array.
    """
    out = np.array(motion, dtype=np.float32, copy=True)
    if not len(phones) or out.shape[0] == 0:
        return out
    targets = mouth_targets(phones, out.shape[0], fps)
    emotion = np.zeros(len(DYNAMICS), np.float32) if emotion is None else np.asarray(emotion, np.float32)
    press = MOUTH_CHANNELS.index("lip_press")
    jaw = MOUTH_CHANNELS.index("jaw_open")
    cores = targets[:, press] >= CLOSED_PRESS - 1e-6
    frames = max(1, int(round(CLOSURE_MIN_S * fps)))
    leveled = energy_db is not None and len(energy_db) == len(targets)
    if leveled:
        nasal = _phone_frames(phones, len(targets), fps, NASALS)
        nasal_frames = max(1, int(round(NASAL_CLOSURE_MIN_S * fps)))
        closure = _closures_at_gaps(cores, frames, np.asarray(energy_db, np.float64), nasal, nasal_frames)
        released = cores & ~closure
        targets[released, press] = np.minimum(targets[released, press], RELEASE_PRESS)
    else:
        closure = _lengthen(cores, frames)
    targets[closure, press] = CLOSURE_PRESS
    targets[closure, jaw] = CLOSURE_JAW
    if leveled:
        level_gain = opening_gain(energy_db, fps)
        gain = np.where(closure, 1.0, level_gain)   # closures stay closed
        for name in OPENING_CHANNELS:
            k = MOUTH_CHANNELS.index(name)
            targets[:, k] = np.clip(targets[:, k] * gain, 0.0, 1.0)
        loud = np.where(closure, 0.0, (level_gain - GAIN_QUIET) / (GAIN_LOUD - GAIN_QUIET))
        targets[:, jaw] = np.clip(targets[:, jaw] + LOUD_JAW * loud, 0.0, 1.0)
        targets[:, press] = np.maximum(targets[:, press], PAUSE_PRESS * pause_weight(energy_db, fps))
    if speaking is not None and len(speaking) == len(targets):
        targets[:, press] = np.maximum(targets[:, press], PAUSE_PRESS * vad_pause_weight(speaking, fps))
    w = np.where(closure, 1.0, float(np.clip(VISEME_WEIGHT if weight is None else weight, 0.0, 1.0))).astype(np.float32)
    for k, index in enumerate(MOUTH_DYN_INDEX):
        column = DYN_SLICE.start + index
        rest = 0.0 if MOUTH_CHANNELS[k] == "jaw_open" else float(source_latent[column])
        target = rest + emotion[index] + targets[:, k]
        out[:, column] = (1.0 - w) * out[:, column] + w * target
    return out


def _phone_frames(phones: Sequence[Phone], num_frames: int, fps: float, symbols: tuple[str, ...]) -> np.ndarray:
    """(T,) bool: frames showing (with the lips' lead) a phone whose symbol, stress digits and
    length marks stripped, is one of ``symbols``."""
    times = (np.arange(num_frames) + 0.5) / fps + LIP_LEAD_S
    out = np.zeros(num_frames, bool)
    for phone in phones:
        if phone.symbol.strip().lower().strip("012ːˈˌ") in symbols:
            out |= (times >= phone.start_s) & (times < phone.end_s)
    return out


def _closures_at_gaps(cores: np.ndarray, frames: int, energy_db: np.ndarray,
                      nasal: np.ndarray | None = None, nasal_frames: int | None = None) -> np.ndarray:
    """(T,) bool closures: each run of ``cores`` (a bilabial's closed middle) shorter than
    ``frames`` becomes the ``frames``-long window within a frame of it (GAP_REACH frames
    later) whose level is lowest: the silent gap of a stop before its burst, the murmur of an
    /m/, rather than the loud vowel the burst opens into. Runs that overlap ``nasal`` frames
    need only ``nasal_frames``."""
    out = cores.copy()
    n = len(cores)
    for start, end in _runs(cores):
        needed = nasal_frames if nasal is not None and nasal_frames and nasal[start:end].any() else frames
        if end - start >= needed:
            continue
        lo, hi = max(0, start - 1), min(n, end + GAP_REACH)
        if hi - lo < needed:
            lo, hi = max(0, min(lo, hi - needed)), min(n, max(hi, lo + needed))
        best = min(range(lo, max(lo, hi - needed) + 1), key=lambda a: (float(energy_db[a:a + needed].mean()), a))
        out[start:end] = False
        out[best:best + needed] = True
    return out


def _lengthen(mask: np.ndarray, frames: int) -> np.ndarray:
    """(T,) bool ``mask`` whose runs shorter than ``frames`` are extended forward (backward at
    the clip's end) to that length."""
    out = mask.copy()
    for start, end in _runs(mask):
        missing = frames - (end - start)
        if missing > 0:
            end = min(len(mask), end + missing)
            out[max(0, end - frames):end] = True
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)] of the runs of True in a (T,) bool mask, end exclusive."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(padded) == 1), np.flatnonzero(np.diff(padded) == -1)
    return list(zip(starts.tolist(), ends.tolist()))
