"""Audio-feature stage: any speech file -> features on the video frame grid."""

from __future__ import annotations

import tempfile
from typing import ClassVar

from pipeline.identity import sha256_file
from pipeline.stage import Resources, TaskStage
from pipeline.storage import Storage, is_s3
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

    def __init__(self, max_seconds: float = MAX_AUDIO_SECONDS, storage: Storage | None = None):
        self.max_seconds = max_seconds
        self.storage = storage or Storage()
        self._downloads = tempfile.mkdtemp(prefix="talkfarm-audio-")

    def process(self, task: RenderTask) -> None:
        with self.storage.localized(task.request.audio, self._downloads) as local:
            wave = load_audio(local, SAMPLE_RATE, self.max_seconds)
            task.audio_sha256 = sha256_file(local)
        wave = normalize_loudness(wave, sample_rate=SAMPLE_RATE)
        task.audio = compute_features(wave, SAMPLE_RATE, task.request.controls.fps)
        # The encoder muxes the original speech; it fetches remote audio itself.
        task.audio_path = None if is_s3(task.request.audio) else str(local)
