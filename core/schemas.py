"""Request and result models at the edges of the system (CLI, batch files, manifests).

Validated once here with pydantic; everything inside works on the validated objects.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.errors import BadInputError
from core.languages import check_language
from core.transcripts import MAX_TEXT_CHARS

EMOTION_NAMES = ("neutral", "happy", "sad", "surprised", "angry")
MOTION_GENERATORS = ("diffusion", "procedural")


class RenderControls(BaseModel):
    """How to render: output geometry and the VASA-1 style controls.

    The one declaration of every render control: its type, default, bounds and help text.
    The ``talkfarm render`` options and the request-file columns are generated from these
    fields (``pipeline.controls``), and the motion sampler's settings are mapped from them
    (``workers.motion.base.motion_controls``): a new control is a new field here.
    ``json_schema_extra`` carries what the type alone does not say: ``choices`` (names a
    text field accepts), ``parts`` (names of a pair's two numbers: the CLI's ``YAW,PITCH``,
    the columns ``gaze_yaw`` / ``gaze_pitch``), ``text_file`` (on the command line the value
    may be a path to a UTF-8 ``.txt`` file) and ``negative_help`` (what ``--no-NAME`` does).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(512, ge=128, le=1024, description="side of the square face crop in pixels, an even number")
    fps: float = Field(25.0, ge=10.0, le=60.0, description="video frames per second")
    seed: int = Field(0, ge=0, description="random seed for head motion, blinks, saccades and sampling")
    gaze: tuple[float, float] | None = Field(
        None, description="gaze direction in degrees relative to the head (+yaw: image right, +pitch: up; "
                          "within +-35 yaw, +-25 pitch); default keeps the photo's gaze",
        json_schema_extra={"parts": ["yaw", "pitch"]})
    distance: float = Field(
        1.0, ge=0.5, le=2.0, description="head-to-camera scale: 1.0 as in the photo, 1.2 closer, 0.8 further")
    emotion: str | tuple[float, ...] = Field(
        "neutral", description="expression offset: a name, or a vector of the 12 facial-dynamics offsets",
        json_schema_extra={"choices": list(EMOTION_NAMES)})
    paste_back: bool = Field(False, description="render the head back into the full original photo instead "
                                                "of the face crop")
    motion: str = Field("diffusion", description="motion generator: diffusion (the trained transformer) or "
                                                 "procedural (hand-made baseline)",
                        json_schema_extra={"choices": list(MOTION_GENERATORS)})
    sampling_steps: int = Field(10, ge=1, le=100, description="diffusion denoising (DDIM) steps per window")
    audio_guidance: float = Field(0.5, ge=0.0, le=5.0, description="classifier-free guidance scale on the audio, "
                                  "lambda_A, for the face (diffusion; the head pose is sampled without it)")
    gaze_guidance: float = Field(1.0, ge=0.0, le=5.0, description="classifier-free guidance scale on the gaze "
                                                                  "direction, lambda_g (diffusion)")
    transcript: str | None = Field(
        None, max_length=MAX_TEXT_CHARS,
        description="what the speech says, aligned to the audio so the lips follow its phonemes (closures on "
                    "p/b/m, rounding, jaw height); text that does not match the audio falls back to audio-only "
                    "lip sync with a warning. Without it the speech is recognised (see recognise)",
        json_schema_extra={"text_file": True})
    language: str = Field("en", description="language of the speech and transcript, an espeak-ng code (en, es, de, "
                                            "fr, pt-br, ...; `espeak-ng --voices` lists them)")
    recognise: bool = Field(True, description="without a transcript, recognise the speech (Whisper) and shape the "
                                              "lips by its words",
                            json_schema_extra={"negative_help": "audio-only lip sync, no recognition cost (faster)"})

    @field_validator("size")
    @classmethod
    def _even_size(cls, size: int) -> int:
        if size % 2:
            raise ValueError("size must be even (h264 yuv420p needs even dimensions)")
        return size

    @field_validator("gaze")
    @classmethod
    def _gaze_range(cls, gaze: tuple[float, float] | None) -> tuple[float, float] | None:
        if gaze is not None and (abs(gaze[0]) > 35 or abs(gaze[1]) > 25):
            raise ValueError("gaze must be within +-35 degrees yaw and +-25 degrees pitch")
        return gaze

    @field_validator("emotion")
    @classmethod
    def _known_emotion(cls, emotion: str | tuple[float, ...]) -> str | tuple[float, ...]:
        if isinstance(emotion, str) and emotion not in EMOTION_NAMES:
            raise ValueError(f"unknown emotion {emotion!r}; choose one of {', '.join(EMOTION_NAMES)}")
        return emotion

    @field_validator("transcript")
    @classmethod
    def _clean_transcript(cls, transcript: str | None) -> str | None:
        if transcript is None:
            return None
        text = " ".join(transcript.split())
        return text or None

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str) -> str:
        if language == "en":   # the default: no espeak-ng needed to accept it
            return language
        try:
            return check_language(language)
        except BadInputError as err:
            raise ValueError(str(err)) from None

    @field_validator("motion")
    @classmethod
    def _known_motion(cls, motion: str) -> str:
        if motion not in MOTION_GENERATORS:
            raise ValueError(f"unknown motion generator {motion!r}; choose one of {', '.join(MOTION_GENERATORS)}")
        return motion


def identity_controls(controls: RenderControls) -> dict:
    """The controls as they enter a render's identity (JSON types): transcript and language
    only when there is a transcript, so renders without one keep their ids."""
    exclude = {"transcript", "language"} if controls.transcript is None else None
    return controls.model_dump(mode="json", exclude=exclude)


TAKE_FITS = ("trim", "hold", "error")


class TakeOptions(BaseModel):
    """How a dubbing request (one with a ``video``) fits the take to the new speech.

    Attributes:
        fit: ``trim`` the output ends with the shorter of take and speech; ``hold`` it lasts as
            long as the speech, the take's last frame held (a longer take is cut); ``error``
            the lengths may differ by at most a second (then as ``hold``).
        face: which face to dub when the take shows several: 0 the largest, 1 the next, ...
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fit: Literal["trim", "hold", "error"] = Field("trim", description="fit of the take to the new speech: trim, "
                                                                      "hold or error")
    face: int = Field(0, ge=0, le=3, description="face to dub: 0 the largest, 1 the next largest, ...")


class RenderRequest(BaseModel):
    """One render: a portrait (``image``) or an actor's take (``video``: a dubbing request),
    a speech clip, where to write, and the controls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(..., min_length=1, description="caller's request id")
    image: str | None = Field(None, min_length=1, description="portrait path or URI (JPEG/PNG/WebP)")
    video: str | None = Field(None, min_length=1, description="the actor's take to dub, path or URI "
                                                              "(MP4/MOV/MKV/WebM)")
    audio: str = Field(..., min_length=1, description="speech path or URI (WAV/FLAC/OGG/MP3)")
    output: str = Field(..., min_length=1, description="output MP4 path or URI")
    controls: RenderControls = RenderControls()
    take: TakeOptions = TakeOptions()

    @model_validator(mode="after")
    def _one_source(self) -> "RenderRequest":
        if (self.image is None) == (self.video is None):
            raise ValueError("a request needs exactly one of image (a portrait) and video (a take to dub)")
        return self

    @property
    def source(self) -> str:
        """The face's source: the portrait, or the take being dubbed."""
        return self.image if self.image is not None else self.video

    @property
    def is_dub(self) -> bool:
        return self.video is not None


class RenderResult(BaseModel):
    """What happened to one request. ``status`` is ``done`` or ``failed``, never silent."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    status: Literal["done", "failed"]
    output: str | None = None
    output_sha256: str | None = None
    frames: int = 0
    audio_seconds: float = 0.0
    seconds: dict[str, float] = Field(default_factory=dict, description="wall seconds per stage")
    error_stage: str | None = None
    error_message: str | None = None
    warnings: list[str] = Field(default_factory=list)
    model_versions: dict[str, str] = Field(default_factory=dict)
    render_id: str | None = Field(None, description="content identity of the render")
    watermark_payload: str | None = Field(None, description="what the video's invisible watermark says")
    quality: dict | None = Field(None, description="QC metrics measured on the finished video (batch renders)")
    quality_flags: list[str] = Field(default_factory=list, description="QC thresholds the video broke")
    transcript: dict | None = Field(None, description="the render's transcript: text, source (given or recognised), "
                                                      "language, recogniser confidence, used")
