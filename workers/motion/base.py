"""What every motion generator takes and returns, mapped from the request's RenderControls.

:class:`core.schemas.RenderControls` declares every render control and its default once;
:func:`motion_controls` is the one place its fields become what a generator and the diffusion
sampler need (the emotion name as a dynamics offset, the sampling fields as
:class:`SamplingOptions`). Neither dataclass here declares a default of its own for a
control; where one is left out, it is RenderControls'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.schemas import RenderControls
from core.speech import AudioFeatures
from workers.face.latents import emotion_offset

# lambda_A on the head pose channels. 0: speech guides the lips, not the head. Guiding the head
# by the audio pushes its motion out of the range the model was trained on: mean rotation over
# 6-frame spans 0.30 deg/frame at 0, 0.46 at 0.5, 0.59 at 1.0, against 0.23 in the corpus
# (shared speech, 2 seeds). A property of the trained model, not a render control.
POSE_AUDIO_GUIDANCE = 0.0


@dataclass(frozen=True)
class SamplingOptions:
    """How the diffusion sampler samples (``workers.motion.diffusion``).

    Attributes:
        steps: DDIM steps per window (``RenderControls.sampling_steps``).
        audio_guidance: lambda_A, classifier-free guidance on the audio, for the face
            (expression dynamics, mouth included, and gaze).
        gaze_guidance: lambda_g, classifier-free guidance on the gaze direction.
        pose_audio_guidance: lambda_A for the head pose channels (see POSE_AUDIO_GUIDANCE).
    """

    steps: int
    audio_guidance: float
    gaze_guidance: float
    pose_audio_guidance: float = POSE_AUDIO_GUIDANCE


@dataclass(frozen=True)
class MotionControls:
    """Per-render controls a motion generator honours.

    Attributes:
        seed: random seed for head motion, blinks, saccades and sampling noise.
        gaze: (yaw, pitch) degrees relative to the head, or None for the photo's own gaze.
        distance: head-to-camera scale, 1.0 = as in the photo.
        emotion: dynamics offset (len(DYNAMICS),) added to every frame.
        sampling: how the diffusion sampler samples (learned generators; others ignore it);
            left out: RenderControls' defaults.
    """

    seed: int
    gaze: tuple[float, float] | None
    distance: float
    emotion: np.ndarray
    sampling: SamplingOptions = field(default_factory=lambda: sampling_options(RenderControls()))


def sampling_options(controls: RenderControls) -> SamplingOptions:
    """The diffusion sampler's settings of validated RenderControls."""
    return SamplingOptions(steps=controls.sampling_steps, audio_guidance=controls.audio_guidance,
                           gaze_guidance=controls.gaze_guidance)


def motion_controls(controls: RenderControls) -> MotionControls:
    """The motion controls of a request's validated RenderControls."""
    return MotionControls(seed=controls.seed, gaze=controls.gaze, distance=controls.distance,
                          emotion=emotion_offset(controls.emotion), sampling=sampling_options(controls))


class MotionGenerator(Protocol):
    """Audio features -> motion latents (T, MOTION_DIM), one row per video frame."""

    name: str
    version: str

    def generate(self, audio: AudioFeatures, source_latent: np.ndarray, controls: MotionControls) -> np.ndarray:
        ...
