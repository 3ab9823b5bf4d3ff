"""Audio-feature stage: any speech file -> features on the video frame grid."""

from __future__ import annotations

import dataclasses
import logging
from typing import ClassVar

import numpy as np

from core.errors import BadInputError
from core.identity import sha256_file
from core.languages import check_language
from core.schemas import RenderControls
from core.speech import Transcript, TranscriptAlignment
from core.stage import Resources, TaskStage
from core.storage import Storage, is_s3
from core.task import RenderTask
from workers.audio.align import MIN_CONFIDENCE, align
from workers.audio.align import VERSION as TRANSCRIPT_ALIGNMENT_VERSION
from workers.audio.decode import load_audio, normalize_loudness
from workers.audio.features import compute_features
from workers.audio.recognise import VERSION as RECOGNITION_VERSION
from workers.audio.recognise import recognise
from workers.audio.vad import VERSION as VAD_VERSION
from workers.audio.vad import speech_mask, speech_probability
from workers.audio.whisper import (
    MOTION_FEATURES_VERSION,
    ModelUnavailableError,
    with_motion_features,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_AUDIO_SECONDS = 600.0


class AudioFeatureStage(TaskStage):
    """Decodes the speech (ffmpeg, 16 kHz mono), normalises loudness, computes features.

    Fills ``task.audio`` (with silero-vad's speech probability per frame and, for the diffusion
    motion model, Whisper's encoder states) and ``task.audio_path``. Empty, silent, non-audio or over-long files fail the request with a
    clear message.

    Every render gets a transcript (``task.transcript``): the request's own
    (``controls.transcript``, which always wins) or, without one, what the recogniser
    (``workers.audio.recognise``, Whisper) hears. The text is aligned to the speech
    (``workers.audio.align``), filling ``task.phones`` and ``task.transcript_alignment``. Text that does
    not match the audio (confidence below ``MIN_CONFIDENCE``), that cannot be aligned, or a
    recognition that is not confident (music, noise, an unknown language) leaves
    ``task.phones`` empty (audio-only motion) with a warning, never a failed render; an
    unsupported ``language`` given with a transcript fails the request.
    ``controls.recognise`` False skips recognition (audio-only lips, no transcript).
    """

    name: ClassVar[str] = "audio"
    resources: ClassVar[Resources] = Resources(cpus=0.1)

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        versions = {"voice_activity": VAD_VERSION}
        if controls.motion == "diffusion":
            versions["speech_features"] = MOTION_FEATURES_VERSION
        if controls.transcript is not None:
            versions["transcript_alignment"] = TRANSCRIPT_ALIGNMENT_VERSION
        elif controls.recognise:
            versions["speech_recognition"] = RECOGNITION_VERSION
        return versions

    def __init__(self, max_seconds: float = MAX_AUDIO_SECONDS, storage: Storage | None = None):
        self.max_seconds = max_seconds
        self.storage = storage or Storage()

    def process(self, task: RenderTask) -> None:
        controls = task.request.controls
        with self.storage.localized(task.request.audio) as local:
            wave = load_audio(local, SAMPLE_RATE, self.max_seconds)
            task.audio_sha256 = sha256_file(local)
        wave = normalize_loudness(wave, sample_rate=SAMPLE_RATE)
        features = compute_features(wave, SAMPLE_RATE, controls.fps)
        if controls.motion == "diffusion":     # the diffusion model reads Whisper's encoder states
            features = with_motion_features(features, wave)
            task.model_versions["speech_features"] = MOTION_FEATURES_VERSION
        task.audio = dataclasses.replace(features, speech_probability=speech_probability(wave, controls.fps))
        task.model_versions["voice_activity"] = VAD_VERSION
        if controls.transcript:
            task.transcript = Transcript(text=controls.transcript, source="given", language=controls.language)
            self._align(task, wave, controls.transcript, controls.language)
        elif controls.recognise:
            self._recognise(task, wave)
        # The encoder muxes the original speech; it fetches remote audio itself.
        task.audio_path = None if is_s3(task.request.audio) else str(local)

    def _recognise(self, task: RenderTask, wave: np.ndarray) -> None:
        """Transcribe the speech; a confident transcript is aligned as a given one would be."""
        fps = task.audio.fps
        speech_seconds = float(speech_mask(task.audio.speech_probability, fps).sum()) / fps
        try:
            recognition = recognise(wave, task.request.controls.language, speech_seconds)
        except ModelUnavailableError as error:      # an install problem: render without a transcript
            task.warnings.append(f"no transcript: {error}; lip sync from the audio only")
            return
        task.model_versions["speech_recognition"] = RECOGNITION_VERSION
        if recognition.model_version:
            task.model_versions["speech_recognition_model"] = recognition.model_version
        task.transcript = recognition.transcript()
        if not recognition.usable:
            task.warnings.append(f"no transcript: {recognition.problem}; lip sync from the audio only")
            return
        words = [(word.text, word.start_s, word.end_s) for word in recognition.words]
        self._align(task, wave, recognition.text, recognition.language, words)
        task.transcript = dataclasses.replace(task.transcript, used=bool(task.phones))

    @staticmethod
    def _align(task: RenderTask, wave, text: str, language_code: str,
               words: list[tuple[str, float, float]] | None = None) -> None:
        language = check_language(language_code)   # BadInputError: fails the request
        task.model_versions["transcript_alignment"] = TRANSCRIPT_ALIGNMENT_VERSION
        try:
            result = align(wave, text, language, words=words)
        except BadInputError as error:
            task.transcript_alignment = TranscriptAlignment(method=None, language=language, confidence=0.0, phones=0,
                                                            used=False)
            task.warnings.append(f"transcript not used: it could not be aligned ({error}); lip sync from the audio only")
            return
        task.transcript_alignment = TranscriptAlignment(method=result.method, language=language,
                                                        confidence=round(result.confidence, 3),
                                                        phones=len(result.phones), used=result.matches)
        if result.matches and result.phones:
            task.phones = result.phones
        else:
            logger.info("transcript alignment confidence %.3f below %.2f", result.confidence, MIN_CONFIDENCE)
            task.warnings.append(f"transcript does not match the audio (alignment confidence {result.confidence:.2f} "
                                 f"< {MIN_CONFIDENCE:.2f}); lip sync from the audio only")
