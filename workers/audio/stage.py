"""Audio-feature stage: any speech file -> features on the video frame grid."""

from __future__ import annotations

import logging
from typing import ClassVar

from pipeline.errors import BadInputError
from pipeline.identity import sha256_file
from pipeline.stage import Resources, TaskStage
from pipeline.storage import Storage, is_s3
from pipeline.task import RenderTask
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_AUDIO_SECONDS = 600.0


class AudioFeatureStage(TaskStage):
    """Decodes the speech (ffmpeg, 16 kHz mono), normalises loudness, computes features.

    Fills ``task.audio`` and ``task.audio_path``. Empty, silent, non-audio or over-long
    files fail the request with a clear message.

    With a transcript (``controls.transcript``) it also aligns the text to the speech
    (``workers.audio.align``) and fills ``task.phones`` and ``task.alignment``. Text that
    does not match the audio (confidence below ``MIN_CONFIDENCE``) or that cannot be
    aligned leaves ``task.phones`` empty (audio-only motion) with a warning; an unsupported
    language fails the request.
    """

    name: ClassVar[str] = "audio"
    resources: ClassVar[Resources] = Resources(cpus=0.5)

    def __init__(self, max_seconds: float = MAX_AUDIO_SECONDS, storage: Storage | None = None):
        self.max_seconds = max_seconds
        self.storage = storage or Storage()

    def process(self, task: RenderTask) -> None:
        with self.storage.localized(task.request.audio) as local:
            wave = load_audio(local, SAMPLE_RATE, self.max_seconds)
            task.audio_sha256 = sha256_file(local)
        wave = normalize_loudness(wave, sample_rate=SAMPLE_RATE)
        task.audio = compute_features(wave, SAMPLE_RATE, task.request.controls.fps)
        if task.request.controls.transcript:
            self._align(task, wave)
        # The encoder muxes the original speech; it fetches remote audio itself.
        task.audio_path = None if is_s3(task.request.audio) else str(local)

    @staticmethod
    def _align(task: RenderTask, wave) -> None:
        from workers.audio.align import MIN_CONFIDENCE, VERSION, align, check_language

        controls = task.request.controls
        language = check_language(controls.language)   # BadInputError: fails the request
        task.model_versions["transcript_alignment"] = VERSION
        try:
            result = align(wave, controls.transcript, language)
        except BadInputError as error:
            task.alignment = {"method": None, "language": language, "confidence": 0.0, "phones": 0, "used": False}
            task.warnings.append(f"transcript not used: it could not be aligned ({error}); lip sync from the audio only")
            return
        task.alignment = {"method": result.method, "language": language, "confidence": round(result.confidence, 3),
                          "phones": len(result.phones), "used": result.matches}
        if result.matches and result.phones:
            task.phones = result.phones
        else:
            logger.info("transcript alignment confidence %.3f below %.2f", result.confidence, MIN_CONFIDENCE)
            task.warnings.append(f"transcript does not match the audio (alignment confidence {result.confidence:.2f} "
                                 f"< {MIN_CONFIDENCE:.2f}); lip sync from the audio only")
