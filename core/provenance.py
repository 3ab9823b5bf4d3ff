"""Provenance of a render: a record that says the video is synthetic and what made it.

The same fields go three places: a sidecar ``<output>.provenance.json`` (written atomically),
the MP4's ``comment`` metadata tag (JSON), and the job manifest row.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from core.identity import render_id as compute_render_id
from core.identity import sha256_file, take_options
from core.schemas import identity_controls

PROVENANCE_VERSION = 1
SIDECAR_SUFFIX = ".provenance.json"


def tool_version() -> str:
    try:
        return metadata.version("talkfarm")
    except metadata.PackageNotFoundError:
        return "unknown"


def sidecar_path(output: str | os.PathLike) -> Path:
    """Where the provenance sidecar of ``output`` lives: ``<output>.provenance.json``."""
    output = Path(output)
    return output.with_name(output.name + SIDECAR_SUFFIX)


def build_record(task, watermark_payload: str | None = None) -> dict:
    """The provenance record of a task (image/audio hashed now unless already known).

    Sets ``task.render_id`` if it was not set yet.
    """
    request = task.request
    versions = dict(task.model_versions)
    image_sha256 = task.image_sha256 or sha256_file(request.source)
    audio_sha256 = task.audio_sha256 or sha256_file(
        request.audio if Path(request.audio).is_file() else task.audio_path)
    if getattr(task, "render_id", None) is None:
        task.render_id = compute_render_id(image_sha256, audio_sha256, request.controls, versions,
                                           take_options(request))
    controls = identity_controls(request.controls)
    if request.is_dub:
        controls = {**controls, "take": take_options(request)}
    return {
        "provenance_version": PROVENANCE_VERSION,
        "synthetic": True,
        "generator": "talkfarm",
        "tool_version": tool_version(),
        "render_id": task.render_id,
        "request_id": request.id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "inputs": {
            "video" if request.is_dub else "image": {"name": Path(request.source).name, "sha256": image_sha256},
            "audio": {"name": Path(request.audio).name, "sha256": audio_sha256},
        },
        "models": versions,
        "controls": controls,
        "seed": request.controls.seed,
        "watermark_payload": watermark_payload,
        "transcript": None if getattr(task, "transcript", None) is None else task.transcript.to_json(),
    }


def mp4_metadata(record: dict) -> dict[str, str]:
    """MP4 tags carrying the record: ``comment`` = the JSON, plus a short human-readable description."""
    return {
        "comment": json.dumps(record, sort_keys=True, separators=(",", ":")),
        "description": f"synthetic talking-face video made by talkfarm {record['tool_version']}, "
                       f"render {record['render_id']}",
    }


def write_sidecar(output: str | os.PathLike, record: dict) -> Path:
    """Write ``<output>.provenance.json`` atomically (temporary file in the same folder, then rename),
    with the same permissions as the video (0666 less the umask)."""
    target = sidecar_path(output)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
    # Created 0666 less the umask, as the video beside it is (mkstemp's 0600 hid sidecars
    # from the readers of the videos); O_EXCL: the name is this writer's alone.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(record, stream, indent=2, sort_keys=True)
            stream.write("\n")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def read_sidecar(path: str | os.PathLike) -> dict:
    with open(path) as stream:
        return json.load(stream)
