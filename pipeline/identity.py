"""Content identity of a render: the same inputs, controls and models give the same id.

A render id is the sha256 of the input files' contents, the controls (seed included) and
the versions of every model on the path, so resubmitting identical work renders nothing
twice, and the watermark and provenance record can name exactly what made a video.
"""

from __future__ import annotations

import hashlib
import json
import os

from pipeline.schemas import RenderControls, identity_controls

ALIGNMENT_VERSION = "mediapipe-face-mesh-0.10.21"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_versions(controls: RenderControls) -> dict[str, str]:
    """Versions of the models a render with these controls runs through."""
    from workers.decoder.renderer import DECODER_VERSION
    from workers.face.model import RIG_VERSION
    from workers.motion.stage import motion_generators

    versions = {
        "alignment": ALIGNMENT_VERSION,
        "face_model": RIG_VERSION,
        "motion": motion_generators()[controls.motion].version,
        "decoder": DECODER_VERSION,
    }
    from workers.audio.vad import VERSION as VAD_VERSION

    from workers.motion.silences import VERSION as SILENCES_VERSION

    versions["voice_activity"] = VAD_VERSION
    versions["silences"] = SILENCES_VERSION
    if controls.transcript is None and controls.recognise:
        from workers.audio.recognise import VERSION as RECOGNITION_VERSION

        versions["speech_recognition"] = RECOGNITION_VERSION
    elif controls.transcript is not None:
        from workers.audio.align import VERSION as TRANSCRIPT_ALIGNMENT_VERSION
        from workers.motion.visemes import VERSION as VISEME_VERSION

        versions["transcript_alignment"] = TRANSCRIPT_ALIGNMENT_VERSION
        versions["visemes"] = VISEME_VERSION
    return versions


def render_id(image_sha256: str, audio_sha256: str, controls: RenderControls, versions: dict[str, str]) -> str:
    """Hex sha256 naming one render: inputs' contents + controls + model versions."""
    payload = json.dumps({"image": image_sha256, "audio": audio_sha256,
                          "controls": identity_controls(controls), "models": versions},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()
