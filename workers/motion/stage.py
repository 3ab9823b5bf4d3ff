"""Motion stage: audio features + controls -> per-frame motion latents."""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar

from core.devices import local_device
from core.schemas import RenderControls
from core.stage import Resources, TaskStage
from core.task import RenderTask
from workers.audio.vad import speech_mask
from workers.motion.base import MotionGenerator
from workers.motion.base import motion_controls as to_motion_controls
from workers.motion.head import HEAD_VERSION, move_with_neck
from workers.motion.learned import DiffusionMotion
from workers.motion.procedural import ProceduralMotion
from workers.motion.silences import VERSION as SILENCES_VERSION
from workers.motion.silences import ensure_blinks, rest_in_silences
from workers.motion.visemes import VERSION as VISEME_VERSION
from workers.motion.visemes import apply_visemes


def motion_generators(device: str = "cpu") -> dict[str, MotionGenerator]:
    """The generators `--motion` can name (models load on first use); the diffusion sampler
    runs on torch ``device``."""
    return {"diffusion": DiffusionMotion(device=device), "procedural": ProceduralMotion()}


@lru_cache(maxsize=None)
def _generator_version(name: str) -> str:
    return motion_generators()[name].version


class MotionStage(TaskStage):
    """Samples motion latents (T, MOTION_DIM) for each task with its chosen generator, then,
    when the audio stage aligned a transcript (``task.phones``), corrects the six mouth
    channels toward its visemes (``workers.motion.visemes``); finally, where the voice
    activity detector found silences, rests the mouth and settles the head there, and makes
    sure the eyes blink at a human rate (``workers.motion.silences``)."""

    name: ClassVar[str] = "motion"
    resources: ClassVar[Resources] = Resources(cpus=0.1)

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        versions = {"motion": _generator_version(controls.motion), "silences": SILENCES_VERSION, "head": HEAD_VERSION}
        if controls.transcript is not None:
            versions["visemes"] = VISEME_VERSION
        return versions

    def __init__(self, device: str | None = None) -> None:
        """``device``: torch device of the diffusion sampler; None: this process's own
        (``core.devices.local_device``). The graph passes its pool's device."""
        self.device = device or local_device()
        self._generators: dict[str, MotionGenerator] | None = None

    def setup(self) -> None:
        self._generators = motion_generators(self.device)

    def process(self, task: RenderTask) -> None:
        if self._generators is None:
            self.setup()
        controls = task.request.controls
        generator = self._generators[controls.motion]
        motion_controls = to_motion_controls(controls)
        task.motion = generator.generate(task.audio, task.face.model.source_latent, motion_controls)
        task.model_versions["motion"] = generator.version
        if controls.transcript or task.phones:
            task.model_versions["visemes"] = VISEME_VERSION
        speaking = (speech_mask(task.audio.speech_probability, task.audio.fps)
                    if task.audio.speech_probability is not None else None)
        if task.phones:
            # Transcript visemes correct the mouth of whichever generator ran.
            task.motion = apply_visemes(task.motion, task.phones, task.audio.fps, task.face.model.source_latent,
                                        motion_controls.emotion, energy_db=task.audio.energy_db, speaking=speaking)
        task.motion = move_with_neck(task.motion, task.face.model.source_latent, task.audio.fps, controls.seed)
        task.model_versions["head"] = HEAD_VERSION
        if speaking is not None:
            task.motion = rest_in_silences(task.motion, speaking, task.audio.fps, task.face.model.source_latent,
                                           motion_controls.emotion, seed=controls.seed)
            task.motion = ensure_blinks(task.motion, speaking, task.audio.fps, controls.seed)
            task.model_versions["silences"] = SILENCES_VERSION
