"""The target motion of an utterance (T, 20), following the latent layout of
``workers.face.latents`` relative to a neutral frontal source: head motion, blinks and
saccades from ``ProceduralMotion`` driven by the clean audio; the six mouth channels from
the phones (``workers.motion.articulation.mouth_targets``, jaw and lower lip opened up by
ARTICULATION_GAIN and following the clean speech's loudness down to EFFORT_FLOOR:
``articulated_mouth``) plus the emotion offset.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from core.speech import AudioFeatures
from jobs.corpus import FPS
from workers.face.latents import (
    DYN_SLICE,
    DYNAMICS,
    EMOTIONS,
    MOTION_DIM,
    emotion_offset,
)
from workers.motion.articulation import (
    CLASSES,
    CLOSED_JAW,
    CLOSED_PRESS,
    MOUTH_CHANNELS,
    MOUTH_DYN_INDEX,
    Phone,
    VisemeClass,
    mouth_targets,
)
from workers.motion.base import MotionControls
from workers.motion.procedural import ProceduralMotion

NEUTRAL_PROBABILITY = 0.6
# Jaw opening and lower-lip depression of the phone targets are scaled by this (articulated_mouth).
ARTICULATION_GAIN = 1.6
# The corpus's speakers rest with closed lips: the viseme model's silence (lip_press 0.15) taught
# the model a mouth left ajar in pauses, which a photo with parted lips shows as open
# (BENCHMARKS.md, "Motion generators": silence closed 0.0-0.5 on the astronaut).
REST = VisemeClass("rest", (0.02, 0.00, 0.00, 0.60, 0.00, 0.00), CLASSES["silence"].dominance,
                   CLASSES["silence"].theta_anticipatory, CLASSES["silence"].theta_carryover)
# Vocal effort: the jaw and lower lip of the phone targets open this share of their extent on the
# quietest speech and all of it at the utterance's speech level (``vocal_effort``). Louder speech
# opens the jaw wider; with phone targets alone the jaw held one height per vowel whatever the
# loudness, and the targets followed the speech envelope less than the procedural generator on
# French, Italian and Russian recordings (BENCHMARKS.md, "Motion diffusion").
EFFORT_FLOOR = 0.3


def sample_conditions(rng: np.random.Generator) -> tuple[str, np.ndarray, tuple[float, float] | None, float]:
    """(emotion name, dynamics offset (12,), gaze (yaw, pitch) degrees or None, distance)."""
    if rng.random() < NEUTRAL_PROBABILITY:
        name, vector = "neutral", np.zeros(len(DYNAMICS), np.float32)
    else:
        name = str(rng.choice([e for e in EMOTIONS if e != "neutral"]))
        scale = float(rng.uniform(0.5, 1.0))
        vector = emotion_offset(name) * np.float32(scale)
        name = f"{name}@{scale:.2f}"
    gaze = None if rng.random() < 0.5 else (float(rng.uniform(-20, 20)), float(rng.uniform(-12, 12)))
    distance = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.8, 1.25))
    return name, vector, gaze, distance


def vocal_effort(clean_energy_db: np.ndarray) -> np.ndarray:
    """(T,) in [EFFORT_FLOOR, 1]: how far the jaw opens from its phone target's extent, from the
    clean speech's frame level (dBFS, (T,)) relative to the utterance's speech level (its 95th
    percentile, as ``CueStatistics``): the procedural generator's ``loud`` cue, floored."""
    from workers.audio.cues import loudness

    energy = np.asarray(clean_energy_db, np.float64)
    if not len(energy):
        return energy
    return EFFORT_FLOOR + (1.0 - EFFORT_FLOOR) * loudness(energy, float(np.percentile(energy, 95)))


def articulated_mouth(phones: list[Phone], num_frames: int, alphabet: str, clean_energy_db: np.ndarray,
                      unknown: Counter | None = None) -> np.ndarray:
    """(T, len(MOUTH_CHANNELS)) mouth targets of the phones, opened up by ARTICULATION_GAIN and
    scaled by the speech's vocal effort (``clean_energy_db`` (T,) dBFS per frame).

    The viseme model's coarticulated jaw peaks sit near 0.45 on open vowels, and a face
    rendered from them opens about 0.14 mouth widths (p95 - p5) where real talking video
    opens 0.43 (BENCHMARKS.md, "Quality control"): the corpus asked for a mumble. The jaw and
    the lower lip are scaled up; frames where the lips close on p / b / m stay closed; in
    silence the lips rest closed (REST). Then both follow the loudness (vocal_effort).
    """
    mouth = mouth_targets(phones, num_frames, FPS, alphabet=alphabet, unknown=unknown, rest=REST)
    jaw, press = MOUTH_CHANNELS.index("jaw_open"), MOUTH_CHANNELS.index("lip_press")
    lower = MOUTH_CHANNELS.index("lower_lip_depress")
    closed = mouth[:, press] >= CLOSED_PRESS
    effort = vocal_effort(np.asarray(clean_energy_db)[:num_frames])
    for channel in (jaw, lower):
        mouth[:, channel] = np.minimum(mouth[:, channel] * ARTICULATION_GAIN, 1.0)
        mouth[closed, channel] = np.minimum(mouth[closed, channel], CLOSED_JAW)
        mouth[: len(effort), channel] *= effort
    return mouth


def target_motion(clean: AudioFeatures, phones: list[Phone], alphabet: str, emotion: np.ndarray,
                  gaze: tuple[float, float] | None, distance: float, seed: int,
                  unknown: Counter | None = None) -> np.ndarray:
    """(T, MOTION_DIM) float32 motion relative to a neutral frontal source."""
    controls = MotionControls(seed=seed, gaze=gaze, distance=distance, emotion=emotion)
    motion = ProceduralMotion().generate(clean, np.zeros(MOTION_DIM, np.float32), controls)
    set_mouth(motion, articulated_mouth(phones, clean.num_frames, alphabet, clean.energy_db, unknown), emotion)
    return motion.astype(np.float32)


def set_mouth(motion: np.ndarray, mouth: np.ndarray, emotion: np.ndarray) -> None:
    """Write the mouth targets (T, len(MOUTH_CHANNELS)) plus the emotion offset into motion (T, MOTION_DIM)."""
    for k, index in enumerate(MOUTH_DYN_INDEX):
        motion[:, DYN_SLICE.start + index] = mouth[:, k] + emotion[index]


def recipe() -> dict[str, float]:
    """The constants of the mouth targets as a corpus summary records them (read at call time)."""
    return {"articulation_gain": ARTICULATION_GAIN, "rest_press": REST.target[MOUTH_CHANNELS.index("lip_press")],
            "effort_floor": EFFORT_FLOOR}
