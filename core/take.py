"""What the take's tracking found: the record a dubbing request carries through the stages.

Filled by the take stage (``workers.take.stage.TakeTrackStage``), read by the take motion and
take decoding stages. Frame ``i`` of the take is the ``i``-th frame of its stream resampled
to a constant ``fps`` (a variable-frame-rate take is read at its average rate), the same
frames every reader of the take decodes (``workers.take.reader``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

# Why a frame is left as it was (pass-through) instead of dubbed.
FRAME_DUBBED = 0
FRAME_NO_FACE = 1
FRAME_FACE_TOO_SMALL = 2
FRAME_PROFILE = 3
FRAME_MOUTH_OCCLUDED = 4
FRAME_STATUS_NAMES = {FRAME_DUBBED: "dubbed", FRAME_NO_FACE: "no_face", FRAME_FACE_TOO_SMALL: "face_too_small",
                      FRAME_PROFILE: "profile", FRAME_MOUTH_OCCLUDED: "mouth_occluded"}


@dataclass
class MouthInterior:
    """One open mouth of the take, as the decoder reuses it (``workers.take.mouth_bank``).

    Attributes:
        crop: (h, w, 3) uint8 RGB, the frame around the mouth, turned so the mouth corners are
            level and at most the take's own resolution (small: a box around the inner lips).
        upper, lower: (11, 2) float32 the inner lip lines in ``crop`` pixels, right corner to left.
        opening: inner-lip gap over mouth width (``workers.face.mouth.read_mouth``'s measure).
        width: mouth width over the distance between the outer eye corners.
        teeth: whether the frame shows teeth.
        lip_rgb: (3,) float32 the lips' median colour in that frame (0-1).
        frame: the take frame it was taken from.
    """

    crop: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    opening: float
    width: float
    teeth: bool
    lip_rgb: np.ndarray
    frame: int


@dataclass
class MouthBank:
    """The take's own open mouths, at most one per mouth shape bin (a few, whatever the take's
    length): ``entries`` in take order; empty when the actor never opens the mouth."""

    entries: list[MouthInterior] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return sum(entry.crop.nbytes for entry in self.entries)


@dataclass
class TakeTrack:
    """The tracked face of one take.

    Attributes:
        path: local path of the take (readable by the decoding stage), or its URI.
        fps: frames per second the take is read at (its own average rate).
        width, height: frame size, pixels.
        num_frames: frames of the take at ``fps``.
        crop_size: side of the per-frame face crop, pixels (chosen from the face's size).
        landmarks: (num_frames, 478, 3) float32 landmarks in frame pixels; NaN where no face.
        status: (num_frames,) uint8, ``FRAME_*``: dubbed, or why the frame passes through.
        own: (num_frames, MOTION_DIM) float32 the take's own motion latents (the take's face
            model, ``workers.face.model.FaceModel.encode``); zero where the frame passes through.
        cuts: frame indices where a new shot starts (the tracker re-detected there).
        first: take frame whose row is row 0 of ``landmarks``, ``status`` and ``own``: 0 for
            the whole track, a frame chunk's first frame for its window (``window``).
        colour: the take's colour tags (``core.video.probe_video``'s ``colour``), carried to the dub.
        mouth_bank: the take's own open-mouth interiors (``MouthBank``), shared by every window:
            each frame chunk's decoder fills opened mouths from the same few frames.
    """

    path: str
    fps: float
    width: int
    height: int
    num_frames: int
    crop_size: int
    landmarks: np.ndarray
    status: np.ndarray
    own: np.ndarray
    cuts: list[int] = field(default_factory=list)
    first: int = 0
    colour: dict[str, str] = field(default_factory=dict)
    mouth_bank: MouthBank | None = None

    def window(self, start: int, stop: int) -> TakeTrack:
        """The track of output frames [start, stop) alone: the rows of the take frames they
        show (an output frame past the take's end shows its last), copied, so a frame chunk
        sent to another worker carries its own frames' track and not the whole take's. Every
        other field (``num_frames`` included) stays the whole take's; ``counts`` needs the whole."""
        if self.first or len(self.status) != self.num_frames:
            raise ValueError("a window is cut from the whole track")
        first = min(start, self.num_frames - 1)
        last = min(max(stop, start + 1) - 1, self.num_frames - 1)
        rows = slice(first, last + 1)
        return dataclasses.replace(self, first=first, landmarks=self.landmarks[rows].copy(),
                                   status=self.status[rows].copy(), own=self.own[rows].copy(),
                                   cuts=[cut for cut in self.cuts if first <= cut <= last])

    def rows(self, frames: np.ndarray) -> np.ndarray:
        """Rows of ``landmarks`` / ``status`` / ``own`` holding take frames ``frames``."""
        return np.asarray(frames) - self.first

    def counts(self, frames: int | None = None) -> dict[str, int]:
        """Frames per status (``FRAME_STATUS_NAMES``) among the first ``frames`` output frames;
        an output frame past the take's end repeats its last frame."""
        frames = self.num_frames if frames is None else frames
        index = np.minimum(np.arange(frames), self.num_frames - 1)
        values = np.bincount(self.status[index], minlength=len(FRAME_STATUS_NAMES))
        return {name: int(values[code]) for code, name in FRAME_STATUS_NAMES.items()}
