"""Alignment stage: photo -> largest face -> aligned crop, landmarks and face model."""

from __future__ import annotations

from typing import ClassVar

from core.errors import BadInputError
from core.identity import sha256_file
from core.schemas import RenderControls
from core.stage import Resources, TaskStage
from core.storage import Storage
from core.task import RenderTask
from workers.alignment.face import align_face
from workers.alignment.image import load_image
from workers.alignment.landmarks import FaceMeshDetector
from workers.face.model import RIG_VERSION

ALIGNMENT_VERSION = "mediapipe-face-mesh-0.10.21"
MIN_FACE_PX = 64
# QC flag of a render whose photo's mouth could not be animated (hidden or cut off).
MOUTH_HIDDEN_FLAG = "mouth_hidden"


class AlignmentStage(TaskStage):
    """Finds the face (MediaPipe Face Mesh, 478 landmarks) and aligns it.

    Fills ``task.face``. Several faces: the largest is used and a warning recorded. No face,
    or one under MIN_FACE_PX pixels: the request fails with a clear message.
    """

    name: ClassVar[str] = "alignment"
    resources: ClassVar[Resources] = Resources(cpus=0.2)

    @classmethod
    def model_versions(cls, controls: RenderControls) -> dict[str, str]:
        return {"alignment": ALIGNMENT_VERSION, "face_model": RIG_VERSION}

    def __init__(self, min_face_px: int = MIN_FACE_PX, storage: Storage | None = None):
        self.min_face_px = min_face_px
        self.storage = storage or Storage()
        self._detector: FaceMeshDetector | None = None

    def setup(self) -> None:
        self._detector = FaceMeshDetector()

    def process(self, task: RenderTask) -> None:
        if self._detector is None:
            self.setup()
        path = task.request.image
        with self.storage.localized(path) as local:
            photo = load_image(local)
            task.image_sha256 = sha256_file(local)
        faces = self._detector.detect(photo)
        if not faces:
            raise BadInputError("no face found in the image", path)
        face = faces[0]
        if face.size < self.min_face_px:
            raise BadInputError(f"the face is only {face.size:.0f} px; at least {self.min_face_px} px is needed", path)
        if len(faces) > 1:
            task.warnings.append(f"{len(faces)} faces found in {path}; using the largest")
        task.face = align_face(photo, face.landmarks, task.request.controls.size, face.size)
        task.model_versions["alignment"] = ALIGNMENT_VERSION
        task.model_versions["face_model"] = task.face.model.version
        task.model_versions["mouth_reader"] = task.face.mouth.version
        if task.face.mouth.hidden is not None:
            # Rendered with the photo's own mouth, unmoving (see FaceRenderer): never a broken mouth.
            task.warnings.append(f"the mouth is {task.face.mouth.hidden} in {path}; it is left as in the photo, "
                                 "without lip sync")
            task.quality_flags.append(MOUTH_HIDDEN_FLAG)
