"""Confinement to URI prefixes: which objects a :class:`~core.storage.Storage` may read or write.

Prefixes match whole path components (``s3://b/in`` covers ``s3://b/in/x.wav``, not
``s3://b/inbox/x.wav``); local paths are compared after resolving symlinks and ``..``, and a
missing path resolves as an existing one would, so a verdict never tells whether a file exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.storage.uri import parse_uri

OUTSIDE_MESSAGE = "outside the allowed prefixes"
"""The one refusal for a URI a confined job may not touch (whether or not it exists)."""

Prefix = tuple[str, str]
"""A normalised prefix: (scheme, ``bucket/key`` without a trailing ``/`` or a resolved local path)."""


def normalize_prefix(prefix: str) -> Prefix:
    """``prefix`` (``s3://bucket/key``, a local path or ``file://`` URI) as :data:`Prefix`."""
    parsed = parse_uri(prefix)
    if parsed.scheme == "s3":
        return "s3", f"{parsed.bucket}/{parsed.key}".rstrip("/")
    return "file", str(Path(parsed.key).expanduser().resolve())


def is_under(uri: str | os.PathLike, prefixes: list[Prefix] | None) -> bool:
    """True when ``uri`` lies under one of ``prefixes`` (always, when ``prefixes`` is None)."""
    if prefixes is None:
        return True
    parsed = parse_uri(uri)
    if parsed.scheme == "s3":
        target = f"{parsed.bucket}/{parsed.key}"
    else:
        # strict=False: a missing path resolves the same way as an existing one, so the
        # verdict (and its message) never depends on whether the file exists
        target = str(Path(parsed.key).expanduser().resolve())
    for scheme, prefix in prefixes:
        if scheme != parsed.scheme:
            continue
        if scheme == "file" and prefix == os.sep:
            return True
        if target == prefix or target.startswith(prefix + ("/" if scheme == "s3" else os.sep)):
            return True
    return False
