"""What flows between stages: one RenderTask per request, FrameChunks for the frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from core.schemas import RenderRequest, RenderResult
from core.speech import AudioFeatures, Phone, Transcript, TranscriptAlignment
from core.take import TakeTrack


class AlignedPortrait(Protocol):
    """What every layer may read of the alignment stage's output
    (``workers.alignment.face.AlignedFace``, which adds the face model and the mouth reading).

    Attributes:
        crop: (S, S, 3) uint8 RGB, face upright and centred.
        landmarks: (478, 3) landmarks in crop pixels.
        crop_from_photo: (2, 3) affine mapping photo pixels to crop pixels.
        photo: (H, W, 3) uint8 RGB original.
        face_px: face size in the original photo, pixels.
    """

    crop: np.ndarray
    landmarks: np.ndarray
    crop_from_photo: np.ndarray
    photo: np.ndarray
    face_px: float


@dataclass(frozen=True)
class StageFailure:
    """Why a request failed: the stage that found it and one plain sentence."""

    stage: str
    message: str


@dataclass
class RenderTask:
    """One request on its way through the stages; each stage fills in its part.

    Attributes:
        request: the validated request.
        face: alignment output (crop, landmarks, crop<-photo transform, face model).
        audio: audio features at the video frame rate.
        audio_path: local path of the speech file (muxed into the video).
        motion: (T, MOTION_DIM) float32 motion latents, one row per video frame.
        failure: set once a stage rejects the request; later stages skip the task.
        seconds: wall seconds spent per stage.
        warnings: notes for the result (e.g. "3 faces found; used the largest").
        model_versions: name -> version of every model that touched the render.
        output_sha256: content hash of the finished video, once written.
        image_sha256, audio_sha256: content hashes of the inputs, set by the stages that read them.
        render_id: content identity of the render (core.identity.render_id).
        provenance: the provenance record written beside the video (core.provenance).
        phones: transcript phones aligned to the audio (workers.audio.align), when the request
            has a transcript that matched; the motion stage turns them into visemes.
        quality, quality_flags: the batch QC of the finished video (workers.quality.qc.BatchQC,
            measured by the encoder on the frames it wrote) and the thresholds it broke; None
            when not measured.
        transcript_alignment: how the transcript was placed in the speech (method, language,
            confidence, phones, used); not the face alignment (``face``).
        transcript: the render's transcript: text, source ("given" by the request or
            "recognised" by workers.audio.recognise), language and, when recognised, the
            recogniser's confidence, model and whether it was used.
        take: a dubbing request's tracked take (``core.take``); None for a portrait render.
    """

    request: RenderRequest
    face: AlignedPortrait | None = None
    audio: AudioFeatures | None = None
    audio_path: str | None = None
    motion: np.ndarray | None = None
    failure: StageFailure | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    model_versions: dict[str, str] = field(default_factory=dict)
    output_sha256: str | None = None
    image_sha256: str | None = None
    audio_sha256: str | None = None
    render_id: str | None = None
    provenance: dict | None = None
    phones: list[Phone] | None = None
    transcript_alignment: TranscriptAlignment | None = None
    transcript: Transcript | None = None
    quality: dict | None = None
    quality_flags: list[str] = field(default_factory=list)
    take: TakeTrack | None = None

    @property
    def num_frames(self) -> int:
        return 0 if self.motion is None else int(self.motion.shape[0])

    def result(self) -> RenderResult:
        """The user-facing result of the finished (or failed) render."""
        failed = self.failure is not None
        return RenderResult(
            request_id=self.request.id,
            status="failed" if failed else "done",
            output=None if failed else self.request.output,
            output_sha256=None if failed else self.output_sha256,
            frames=0 if failed else self.num_frames,
            audio_seconds=0.0 if self.audio is None else self.audio.duration_s,
            seconds=dict(self.seconds),
            error_stage=self.failure.stage if failed else None,
            error_message=self.failure.message if failed else None,
            warnings=list(self.warnings),
            model_versions=dict(self.model_versions),
            render_id=self.render_id,
            watermark_payload=None if self.provenance is None else self.provenance.get("watermark_payload"),
            quality=None if failed else self.quality,
            quality_flags=[] if failed else list(self.quality_flags),
            transcript=None if self.transcript is None else self.transcript.to_json(),
        )


@dataclass
class FrameChunk:
    """Frames [start, stop) of one render, decoded from its motion latents.

    ``frames`` is (stop - start, H, W, 3) uint8 RGB once the decoding stage has run.
    ``seconds`` holds the wall seconds this chunk spent per stage: on Ray every chunk carries
    its own copy of the task, so the driver adds these up for the render's totals.
    """

    task: RenderTask
    start: int
    stop: int
    frames: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # (stop - start, K, 2) float32 polygons in frame pixels: where each frame was re-rendered
    # (all NaN: the frame passed through). None: whole frames were rendered (a portrait).
    # The encoder marks these regions at full strength and the rest of the frame lighter.
    edited_regions: np.ndarray | None = None

    @property
    def is_last(self) -> bool:
        return self.stop >= self.task.num_frames
