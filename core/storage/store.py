"""The :class:`Storage` object: one interface over local files and S3 (see the package docstring)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from core.errors import BadInputError, TransientError
from core.storage.local import atomic_write
from core.storage.prefixes import OUTSIDE_MESSAGE, is_under, normalize_prefix
from core.storage.s3 import call_with_retries, make_client, transfer_config
from core.storage.uri import PARTIAL_MARKER, ParsedURI, parse_uri
from monitoring.metrics import metrics

T = TypeVar("T")

_MiB = 1024 * 1024
_READ_BLOCK = 1 * _MiB


class Storage:
    """Read and write files named by URIs (local paths, ``file://``, ``s3://``).

    Args:
        allowed_prefixes: when given, every URI touched must lie under one of these prefixes
            (``"s3://bucket"``, ``"s3://bucket/renders/"``, ``"/data/in"``, ``"file:///data"``);
            others raise ``BadInputError``. Prefixes match whole path components:
            ``s3://b/in`` allows ``s3://b/in/x.wav`` but not ``s3://b/inbox/x.wav``. Local
            paths are compared after resolving symlinks and ``..``. ``None`` allows everything.
        writable_prefixes: when given, writes and deletes must lie under one of these (and
            reads under one of these or of ``allowed_prefixes``): a confined batch job reads its
            inputs and writes only its output prefix (``pipeline.access``).
        max_attempts: tries per S3 operation before raising ``TransientError``.
        backoff_s: first retry delay; doubles each attempt (with jitter), capped at ``max_backoff_s``.
        max_backoff_s: largest single retry delay.
        multipart_threshold: uploads at or above this many bytes go multipart.
        multipart_chunksize: part size of multipart uploads (S3 minimum is 5 MiB).
        endpoint_url / region: override the standard AWS settings (normally left ``None``).
        connect_timeout / read_timeout: socket timeouts for S3 calls, seconds.
    """

    def __init__(
        self,
        allowed_prefixes: Iterable[str] | None = None,
        *,
        writable_prefixes: Iterable[str] | None = None,
        max_attempts: int = 5,
        backoff_s: float = 0.25,
        max_backoff_s: float = 8.0,
        multipart_threshold: int = 64 * _MiB,
        multipart_chunksize: int = 16 * _MiB,
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.allowed_prefixes: list[str] | None = None if allowed_prefixes is None else list(allowed_prefixes)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.endpoint_url = endpoint_url
        self.region = region
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._client: Any = None
        self._lock = threading.Lock()
        self.writable_prefixes: list[str] | None = None if writable_prefixes is None else list(writable_prefixes)
        self._writable = (None if self.writable_prefixes is None
                          else [normalize_prefix(p) for p in self.writable_prefixes])
        self._allowed = None if self.allowed_prefixes is None else [normalize_prefix(p) for p in self.allowed_prefixes]
        if self._allowed is not None and self._writable is not None:
            self._allowed += self._writable       # a job reads back what it may write (reuse, resume)

    # ------------------------------------------------------------------ pickling / client

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Storage(allowed_prefixes={self.allowed_prefixes!r}, writable_prefixes={self.writable_prefixes!r})"

    @property
    def client(self):
        """The boto3 S3 client, created on first use (thread-safe)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = make_client(region=self.region, endpoint_url=self.endpoint_url,
                                               connect_timeout=self.connect_timeout, read_timeout=self.read_timeout)
        return self._client

    def _transfer_config(self):
        return transfer_config(multipart_threshold=self.multipart_threshold,
                               multipart_chunksize=self.multipart_chunksize)

    # ------------------------------------------------------------------ allow-list

    def is_allowed(self, uri: str | os.PathLike) -> bool:
        """True when ``uri`` may be read: under an allowed (or writable) prefix, or no allow-list."""
        return is_under(uri, self._allowed)

    def is_writable(self, uri: str | os.PathLike) -> bool:
        """True when ``uri`` may be written: under a writable prefix (without any, the read rule)."""
        return is_under(uri, self._writable if self._writable is not None else self._allowed)

    def check_allowed(self, uri: str | os.PathLike) -> ParsedURI:
        """Parse ``uri`` and raise ``BadInputError`` if it may not be read."""
        parsed = parse_uri(uri)
        if not self.is_allowed(uri):
            raise BadInputError(OUTSIDE_MESSAGE, os.fspath(uri))
        return parsed

    def check_writable(self, uri: str | os.PathLike) -> ParsedURI:
        """Parse ``uri`` and raise ``BadInputError`` if it may not be written."""
        parsed = parse_uri(uri)
        if not self.is_writable(uri):
            raise BadInputError(OUTSIDE_MESSAGE, os.fspath(uri))
        return parsed

    # ------------------------------------------------------------------ retry machinery

    def _call(self, uri: str, what: str, fn: Callable[[], T], *, missing_ok: bool = False) -> T | None:
        """Run one S3 operation with this store's retry settings (``core.storage.s3``)."""
        return call_with_retries(uri, what, fn, max_attempts=self.max_attempts, backoff_s=self.backoff_s,
                                 max_backoff_s=self.max_backoff_s, missing_ok=missing_ok)

    # ------------------------------------------------------------------ queries

    def exists(self, uri: str | os.PathLike) -> bool:
        """True if the object / file exists (a local directory does not count)."""
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            return parsed.path.is_file()
        head = self._call(parsed.uri(), "head", lambda: self.client.head_object(Bucket=parsed.bucket, Key=parsed.key),
                          missing_ok=True)
        return head is not None

    def size(self, uri: str | os.PathLike) -> int:
        """Size in bytes; ``BadInputError("object not found")`` when missing."""
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            if not parsed.path.is_file():
                raise BadInputError("object not found", os.fspath(uri))
            return parsed.path.stat().st_size
        head = self._call(parsed.uri(), "head", lambda: self.client.head_object(Bucket=parsed.bucket, Key=parsed.key))
        return int(head["ContentLength"])

    def fingerprint(self, uri: str | os.PathLike) -> str | None:
        """A cheap token that changes whenever the object's bytes do (local: size and
        modification time; S3: size and ETag, one HEAD request), or None if it is missing."""
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            try:
                stat = parsed.path.stat()
            except OSError:
                return None
            return f"{stat.st_size}:{stat.st_mtime_ns}"
        head = self._call(parsed.uri(), "head", lambda: self.client.head_object(Bucket=parsed.bucket, Key=parsed.key),
                          missing_ok=True)
        return None if head is None else f"{head['ContentLength']}:{head.get('ETag', '')}"

    def list(self, prefix: str | os.PathLike, *, include_partial: bool = False) -> list[str]:
        """URIs of all objects under ``prefix``, sorted.

        S3: every key starting with the prefix's key (a plain string prefix, as S3 does).
        Local: every file under the folder ``prefix`` (recursively), or, when ``prefix`` is not
        a folder, the files in its parent whose path starts with it. Results use the same form
        as ``prefix`` (``s3://``, ``file://`` or a plain path). Temporary ``.partial-`` objects
        of in-flight puts are hidden unless ``include_partial``.
        """
        text = os.fspath(prefix)
        parsed = self.check_allowed(text)
        out: list[str] = []
        if parsed.scheme == "s3":
            def _list() -> list[str]:
                keys: list[str] = []
                paginator = self.client.get_paginator("list_objects_v2")
                for page in paginator.paginate(Bucket=parsed.bucket, Prefix=parsed.key):
                    keys.extend(obj["Key"] for obj in page.get("Contents", []))
                return keys

            keys = self._call(text, "list", _list) or []
            out = [f"s3://{parsed.bucket}/{k}" for k in keys if include_partial or PARTIAL_MARKER not in k]
        else:
            root = parsed.path
            if root.is_dir():
                files = [p for p in root.rglob("*") if p.is_file()]
            elif root.parent.is_dir():
                files = [p for p in root.parent.rglob("*") if p.is_file() and str(p).startswith(str(root))]
            else:
                files = []
            as_file_uri = text.lower().startswith("file://")
            for p in files:
                if not include_partial and PARTIAL_MARKER in p.name:
                    continue
                out.append(p.resolve().as_uri() if as_file_uri else str(p))
        return sorted(out)

    def sha256(self, uri: str | os.PathLike) -> str:
        """Hex sha256 of the object's bytes (streamed, never held in memory whole)."""
        parsed = self.check_allowed(uri)
        digest = hashlib.sha256()
        if parsed.scheme == "file":
            if not parsed.path.is_file():
                raise BadInputError("object not found", os.fspath(uri))
            with open(parsed.path, "rb") as handle:
                for block in iter(lambda: handle.read(_READ_BLOCK), b""):
                    digest.update(block)
            return digest.hexdigest()

        def _hash() -> str:
            d = hashlib.sha256()
            body = self.client.get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"]
            try:
                for block in body.iter_chunks(_READ_BLOCK):
                    d.update(block)
                    metrics().storage_bytes("read", len(block))
            finally:
                body.close()
            return d.hexdigest()

        return self._call(parsed.uri(), "sha256", _hash)

    # ------------------------------------------------------------------ reads

    def fetch(self, uri: str | os.PathLike, dest_dir: str | os.PathLike) -> Path:
        """Make the object available as a local file and return its path.

        Local paths are checked and returned as they are (no copy). S3 objects are downloaded
        into ``dest_dir`` as ``<hash of uri>_<basename>`` -- the extension is kept (decoders
        sniff it) and two objects with the same basename do not collide. The download goes to
        a temporary name first, so a returned path is always complete.
        """
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            if not parsed.path.is_file():
                raise BadInputError("object not found", os.fspath(uri))
            return parsed.path
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        name = Path(parsed.key).name or "object"
        tag = hashlib.sha1(parsed.uri().encode()).hexdigest()[:12]
        target = dest / f"{tag}_{name}"
        tmp = dest / f".{tag}_{name}{PARTIAL_MARKER}{uuid.uuid4().hex}"

        def _download() -> None:
            self.client.download_file(parsed.bucket, parsed.key, str(tmp), Config=self._transfer_config())

        try:
            self._call(parsed.uri(), "download", _download)
            os.replace(tmp, target)
            metrics().storage_bytes("read", target.stat().st_size)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    @contextlib.contextmanager
    def localized(self, uri: str | os.PathLike) -> Iterator[Path]:
        """A local file with the object's bytes for the duration of a ``with`` block.

        Local paths are only checked against the allow-list and yielded as they are, so the
        reader's own "file not found" message stays; S3 objects are downloaded into a private
        temporary folder that is removed afterwards, so long jobs do not fill the worker's disk.
        """
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            yield parsed.path
            return
        with tempfile.TemporaryDirectory(prefix="talkfarm-fetch-") as folder:
            yield self.fetch(uri, folder)

    def read_bytes(self, uri: str | os.PathLike) -> bytes:
        """The whole object as bytes (for small things: request lists, manifests, JSON)."""
        parsed = self.check_allowed(uri)
        if parsed.scheme == "file":
            if not parsed.path.is_file():
                raise BadInputError("object not found", os.fspath(uri))
            return parsed.path.read_bytes()

        def _get() -> bytes:
            body = self.client.get_object(Bucket=parsed.bucket, Key=parsed.key)["Body"]
            try:
                return body.read()
            finally:
                body.close()

        data = self._call(parsed.uri(), "read", _get)
        metrics().storage_bytes("read", len(data))
        return data

    # ------------------------------------------------------------------ writes

    def put(self, local_path: str | os.PathLike, uri: str | os.PathLike) -> str:
        """Copy a local file to ``uri`` atomically; return ``uri`` (as given, as text).

        Readers see either the old object or the complete new one, never a partial write.
        Parent folders of a local destination are created.
        """
        src = Path(local_path)
        if not src.is_file():
            raise BadInputError("object not found", str(src))
        parsed = self.check_writable(uri)
        if parsed.scheme == "file":
            with open(src, "rb") as handle:
                atomic_write(parsed.path, lambda out: shutil.copyfileobj(handle, out, _READ_BLOCK))
            return os.fspath(uri)
        tmp_key = f"{parsed.key}{PARTIAL_MARKER}{uuid.uuid4().hex}"
        self._s3_atomic(parsed, tmp_key, lambda: self.client.upload_file(
            str(src), parsed.bucket, tmp_key, Config=self._transfer_config()))
        metrics().storage_bytes("write", src.stat().st_size)
        return os.fspath(uri)

    def write_bytes(self, uri: str | os.PathLike, data: bytes, durable: bool = True) -> str:
        """Write ``data`` to ``uri`` atomically (same guarantees as :meth:`put`); return ``uri``.
        ``durable=False``: a local file is not fsynced (see :func:`atomic_write`; S3 is unchanged)."""
        parsed = self.check_writable(uri)
        if parsed.scheme == "file":
            atomic_write(parsed.path, lambda out: out.write(data), durable=durable)
            return os.fspath(uri)
        if len(data) >= self.multipart_threshold:
            with tempfile.NamedTemporaryFile(prefix="talkfarm-put-") as handle:
                handle.write(data)
                handle.flush()
                return self.put(handle.name, uri)
        tmp_key = f"{parsed.key}{PARTIAL_MARKER}{uuid.uuid4().hex}"
        self._s3_atomic(parsed, tmp_key, lambda: self.client.put_object(Bucket=parsed.bucket, Key=tmp_key, Body=data))
        metrics().storage_bytes("write", len(data))
        return os.fspath(uri)

    def copy(self, source: str | os.PathLike, target: str | os.PathLike) -> str:
        """Copy one object to another URI without the bytes passing through this process where
        the store allows: S3 to S3 is a server-side copy (CopyObject, multipart for big objects;
        readers see the old object or the whole new one); a local file is hard-linked when both
        lie on one filesystem (finished outputs are never rewritten in place), else copied
        atomically. Mixed local / S3 pairs stream through a local file. Returns ``target``."""
        src, dst = self.check_allowed(source), self.check_allowed(target)
        if src.scheme == "s3" and dst.scheme == "s3":
            self._call(dst.uri(), "copy", lambda: self.client.copy(
                {"Bucket": src.bucket, "Key": src.key}, dst.bucket, dst.key, Config=self._transfer_config()))
            return os.fspath(target)
        if src.scheme == "file" and dst.scheme == "file":
            if not src.path.is_file():
                raise BadInputError("object not found", os.fspath(source))
            dst.path.parent.mkdir(parents=True, exist_ok=True)
            link = dst.path.parent / f".{dst.path.name}{PARTIAL_MARKER}{uuid.uuid4().hex}"
            try:
                os.link(src.path, link)
                os.replace(link, dst.path)
                return os.fspath(target)
            except OSError:
                link.unlink(missing_ok=True)
            return self.put(src.path, target)
        with self.localized(source) as local:
            return self.put(local, target)

    def delete(self, uri: str | os.PathLike) -> None:
        """Remove the object; deleting a missing object is not an error."""
        parsed = self.check_writable(uri)
        if parsed.scheme == "file":
            parsed.path.unlink(missing_ok=True)
            return
        self._call(parsed.uri(), "delete", lambda: self.client.delete_object(Bucket=parsed.bucket, Key=parsed.key),
                   missing_ok=True)

    def _s3_atomic(self, parsed: ParsedURI, tmp_key: str, upload: Callable[[], Any]) -> None:
        """Upload to ``tmp_key`` (via ``upload``), server-side copy to the final key, drop the temp."""
        uri = parsed.uri()
        try:
            self._call(uri, "upload", upload)
            self._call(uri, "copy", lambda: self.client.copy(
                {"Bucket": parsed.bucket, "Key": tmp_key}, parsed.bucket, parsed.key, Config=self._transfer_config()))
        finally:
            try:
                self._call(uri, "delete temporary", lambda: self.client.delete_object(Bucket=parsed.bucket, Key=tmp_key),
                           missing_ok=True)
            except (TransientError, BadInputError):
                pass  # best effort; the final key is already right (or was never written)
