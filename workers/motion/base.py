"""What every motion generator takes and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.speech import AudioFeatures


@dataclass(frozen=True)
class MotionControls:
    """Per-render controls a motion generator honours.

    Attributes:
        seed: random seed for head motion, blinks and saccades.
        gaze: (yaw, pitch) degrees relative to the head, or None for the photo's own gaze.
        distance: head-to-camera scale, 1.0 = as in the photo.
        emotion: dynamics offset (len(DYNAMICS),) added to every frame.
        sampling_steps: denoising steps per window (learned generators).
        audio_guidance: classifier-free guidance scale on the audio, lambda_A.
        gaze_guidance: classifier-free guidance scale on the gaze direction, lambda_g.
    """

    seed: int
    gaze: tuple[float, float] | None
    distance: float
    emotion: np.ndarray
    sampling_steps: int = 10
    audio_guidance: float = 0.5
    gaze_guidance: float = 1.0


def motion_controls(controls) -> MotionControls:
    """The motion controls of a request's :class:`~core.schemas.RenderControls`."""
    from workers.face.latents import emotion_offset

    return MotionControls(seed=controls.seed, gaze=controls.gaze, distance=controls.distance,
                          emotion=emotion_offset(controls.emotion), sampling_steps=controls.sampling_steps,
                          audio_guidance=controls.audio_guidance, gaze_guidance=controls.gaze_guidance)


class MotionGenerator(Protocol):
    """Audio features -> motion latents (T, MOTION_DIM), one row per video frame."""

    name: str
    version: str

    def generate(self, audio: AudioFeatures, source_latent: np.ndarray, controls: MotionControls) -> np.ndarray:
        ...
