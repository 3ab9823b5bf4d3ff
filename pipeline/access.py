"""Who may read and write what: the access policy of a batch job.

A batch job is confined by default. It reads only under

* the request file's own folder (or, on S3, its "folder": the key prefix up to the last ``/``),
* the prefixes the job names (``talkfarm batch --allow PREFIX``, repeatable),

and writes only under its output prefix (``--out``), which it may also read back (a resumed
job reuses its own finished outputs). ``--allow-any`` opts out of confinement entirely; the
opt-out is stored with the job and recorded in the manifest.

The policy is stored in the job's metadata when the job is created, so ``talkfarm retry``,
``talkfarm status`` and a driver that resumes the job enforce the policy the job was created
with, whatever the directory they run from. Prefixes are stored absolute (local folders) or as
``s3://bucket/prefix``; symlinks are resolved when a URI is checked, so a link inside an
allowed folder that points outside it is refused.

A refusal is decided on the URI alone, before anything is looked up, and says only
"outside the allowed prefixes": it never tells the requester whether the object exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from core.errors import BadInputError
from core.storage import Storage, parse_uri

__all__ = ["AccessPolicy", "absolute_uri", "folder_of"]


def absolute_uri(uri: str | os.PathLike) -> str:
    """``uri`` independent of the working directory: local paths made absolute (``file://``
    URIs become plain paths), ``s3://`` URIs unchanged."""
    parsed = parse_uri(uri)
    if parsed.scheme == "s3":
        return parsed.uri()
    return str(Path(parsed.key).expanduser().absolute())


def folder_of(uri: str | os.PathLike) -> str:
    """The folder a file lives in: its parent directory, or on S3 its key prefix up to the last
    ``/`` (the whole bucket for a key at the bucket's root)."""
    parsed = parse_uri(uri)
    if parsed.scheme == "s3":
        prefix = parsed.key.rsplit("/", 1)[0] if "/" in parsed.key else ""
        return f"s3://{parsed.bucket}/{prefix}".rstrip("/")
    return str(Path(absolute_uri(uri)).parent)


@dataclass(frozen=True)
class AccessPolicy:
    """What one batch job may touch.

    Attributes:
        read: prefixes inputs may be read from (absolute folders or ``s3://bucket/prefix``).
        write: the output prefix; the only place the job writes (and it may read it back).
        allow_any: confinement switched off (``--allow-any``): everything the worker's
            credentials reach may be read and written.
    """

    read: tuple[str, ...]
    write: str
    allow_any: bool = False

    @classmethod
    def for_job(cls, requests_uri: str, out_prefix: str, allow: Iterable[str] = (),
                allow_any: bool = False) -> "AccessPolicy":
        """The default policy of a job: its request file's folder plus ``allow`` for reads,
        ``out_prefix`` for writes."""
        read = [folder_of(requests_uri), *(absolute_uri(prefix) for prefix in allow)]
        return cls(tuple(dict.fromkeys(read)), absolute_uri(out_prefix), allow_any)

    def storage(self, **options: Any) -> Storage:
        """A :class:`Storage` that enforces this policy on every read and write."""
        if self.allow_any:
            return Storage(**options)
        return Storage(allowed_prefixes=self.read, writable_prefixes=[self.write], **options)

    def to_meta(self) -> dict[str, Any]:
        """JSON-able form, stored in the job's metadata under ``"access"``."""
        return {"read": list(self.read), "write": self.write, "allow_any": self.allow_any}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> "AccessPolicy":
        """The policy a job was created with. A job stored before policies were recorded gets
        the default one for its request file and output prefix (confined)."""
        access = meta.get("access")
        if access is None:
            if "requests" not in meta or "out" not in meta:
                raise BadInputError("the job has no stored request file or output prefix to confine it to")
            return cls.for_job(meta["requests"], meta["out"])
        return cls(tuple(access["read"]), access["write"], bool(access.get("allow_any", False)))

    def describe(self) -> str:
        """One line for people: ``reads: A, B; writes: C`` or the opt-out."""
        if self.allow_any:
            return "access: unconfined (--allow-any): reads and writes anything the worker's credentials reach"
        return f"access: reads under {', '.join(self.read)}; writes under {self.write}"
