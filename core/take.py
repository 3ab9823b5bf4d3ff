"""What the take's tracking found: the record a dubbing request carries through the stages.

Filled by the take stage (``workers.take.stage.TakeTrackStage``), read by the take motion and
take decoding stages. Frame ``i`` of the take is the ``i``-th frame of its stream resampled
to a constant ``fps`` (a variable-frame-rate take is read at its average rate), the same
frames every reader of the take decodes (``workers.take.reader``).
"""

from __future__ import annotations

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
        colour: the take's colour tags (``core.video.probe_colour``), carried to the dub.
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
    colour: dict[str, str] = field(default_factory=dict)

    def counts(self, frames: int | None = None) -> dict[str, int]:
        """Frames per status (``FRAME_STATUS_NAMES``) among the first ``frames`` output frames;
        an output frame past the take's end repeats its last frame."""
        frames = self.num_frames if frames is None else frames
        index = np.minimum(np.arange(frames), self.num_frames - 1)
        values = np.bincount(self.status[index], minlength=len(FRAME_STATUS_NAMES))
        return {name: int(values[code]) for code, name in FRAME_STATUS_NAMES.items()}
