"""Quality measurements of rendered talking-face videos, taken from the video's own frames."""

from workers.quality.measure import (
    CLOSED_OPENING,
    OPEN_OPENING,
    PhoneArticulation,
    QualityReport,
    SilenceClosure,
    audio_envelope,
    blink_rate,
    eye_aspect_ratio,
    head_motion,
    lipsync_correlation,
    measure_render,
    mouth_opening,
    phone_articulation,
    silence_closure,
    track_landmarks,
)

__all__ = [
    "CLOSED_OPENING", "OPEN_OPENING", "PhoneArticulation", "QualityReport", "SilenceClosure",
    "audio_envelope", "blink_rate", "eye_aspect_ratio", "head_motion", "lipsync_correlation",
    "measure_render", "mouth_opening", "phone_articulation", "silence_closure", "track_landmarks",
]
