"""URIs of stored objects: local paths, ``file://`` and ``s3://bucket/key``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from core.errors import BadInputError

PARTIAL_MARKER = ".partial-"
"""Infix of temporary objects written by atomic puts (``<key>.partial-<uuid>``)."""


@dataclass(frozen=True)
class ParsedURI:
    """A URI split into its parts.

    Attributes:
        scheme: ``"file"`` for plain paths and ``file://`` URIs, ``"s3"`` for ``s3://``.
        bucket: the S3 bucket (``""`` for local).
        key: the S3 key, or the local path (absolute or relative, as given).
    """

    scheme: str
    bucket: str
    key: str

    @property
    def path(self) -> Path:
        """The local path (only meaningful when ``scheme == "file"``)."""
        return Path(self.key)

    def uri(self) -> str:
        """Canonical text: ``s3://bucket/key`` or the plain local path."""
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else self.key


def parse_uri(uri: str | os.PathLike) -> ParsedURI:
    """Split ``uri`` into scheme / bucket / key.

    Plain paths and ``file://`` URIs are local; ``s3://bucket/key`` is S3. Any other scheme
    (``http://``, ``gs://``...) raises ``BadInputError``.
    """
    text = os.fspath(uri)
    if "://" not in text:
        return ParsedURI("file", "", text)
    parsed = urlparse(text)
    scheme = parsed.scheme.lower()
    if scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BadInputError("file:// URIs must name a local path (file:///abs/path)", text)
        return ParsedURI("file", "", unquote(parsed.path))
    if scheme == "s3":
        if not parsed.netloc:
            raise BadInputError("s3:// URI has no bucket", text)
        bucket, _, key = text.split("://", 1)[1].partition("/")  # keep the key verbatim (no unquoting)
        return ParsedURI("s3", bucket, key)
    raise BadInputError(f"unsupported URI scheme {scheme!r}; use a local path, file:// or s3://", text)


def is_s3(uri: str | os.PathLike) -> bool:
    """True for ``s3://`` URIs."""
    return os.fspath(uri).lower().startswith("s3://")


def join_uri(prefix: str | os.PathLike, *parts: str) -> str:
    """Join ``parts`` under ``prefix`` with ``/`` (S3, ``file://``) or the OS separator (paths).

    ``join_uri("s3://b/out", "job1", "r1.mp4") == "s3://b/out/job1/r1.mp4"``.
    """
    text = os.fspath(prefix)
    if "://" in text:
        return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(text, *parts))
