"""Audio-feature stage: any speech file -> features on the video frame grid."""

from __future__ import annotations

from typing import ClassVar

from pipeline.stage import Resources, TaskStage
from pipeline.task import RenderTask
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features

SAMPLE_RATE = 16000
MAX_AUDIO_SECONDS = 600.0


class AudioFeatureStage(TaskStage):
    """Decodes the speech (ffmpeg, 16 kHz mono), normalises loudness, computes features.

    Fills ``task.audio`` and ``task.audio_path``. Empty, silent, non-audio or over-long
    files fail the request with a clear message.
    """

    name: ClassVar[str] = "audio"
    resources: ClassVar[Resources] = Resources(cpus=0.5)

    def __init__(self, max_seconds: float = MAX_AUDIO_SECONDS):
        self.max_seconds = max_seconds

    def process(self, task: RenderTask) -> None:
        wave = load_audio(task.request.audio, SAMPLE_RATE, self.max_seconds)
        wave = normalize_loudness(wave, sample_rate=SAMPLE_RATE)
        task.audio = compute_features(wave, SAMPLE_RATE, task.request.controls.fps)
        task.audio_path = task.request.audio
