"""Content identity of a render: the same inputs, controls and models give the same id.

A render id is the sha256 of the input files' contents, the controls (seed included) and
the versions of every model on the path, so resubmitting identical work renders nothing
twice, and the watermark and provenance record can name exactly what made a video. The
versions come from the stages themselves (``Stage.model_versions``).
"""

from __future__ import annotations

import hashlib
import json
import os

from core.schemas import RenderControls, RenderRequest, identity_controls


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render_id(image_sha256: str, audio_sha256: str, controls: RenderControls, versions: dict[str, str],
              take: dict | None = None) -> str:
    """Hex sha256 naming one render: inputs' contents (``image_sha256``: the face's source, a
    photo or a take) + controls + model versions (+ a dub's take options, :func:`take_options`)."""
    identity = {"image": image_sha256, "audio": audio_sha256, "controls": identity_controls(controls),
                "models": versions}
    if take is not None:      # only dubs: renders keep their ids
        identity["take"] = take
    payload = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def take_options(request: RenderRequest) -> dict | None:
    """A dubbing request's take options as they enter its render id; None for a portrait."""
    return request.take.model_dump(mode="json") if request.is_dub else None
