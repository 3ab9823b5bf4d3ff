"""A worker's local copies of the takes it dubs, keyed by content.

A long take is split into many frame chunks (``pipeline.graph.frame_chunks``) and every chunk
reads its own frames of the take. On S3, fetching the whole object for every chunk downloads
a 10-minute take once per chunk; the decoding stage instead keeps the few takes it is working
on in a private folder, one file per content hash (``RenderTask.image_sha256``, which the take
stage computed from the same object), and downloads each at most once per worker.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from core.errors import BadInputError
from core.identity import sha256_file
from core.storage import Storage, is_s3

# Takes kept on a worker's disk at once: the one it is dubbing and the next render's, so a
# worker that alternates between two renders' chunks does not download either again.
KEPT_TAKES = 2


class TakeCache:
    """Local files of the takes a worker reads, at most ``kept`` of them, newest kept.

    ``local(uri, sha256)``: a local path holding the take's bytes; a local path is returned as
    it is, an S3 object is downloaded on first use and checked against ``sha256`` (an object
    that changed since the take was tracked fails the request with one clear line).
    """

    def __init__(self, storage: Storage, kept: int = KEPT_TAKES):
        self.storage = storage
        self.kept = kept
        self._folder: tempfile.TemporaryDirectory | None = None
        self._files: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()

    def local(self, uri: str, sha256: str | None) -> Path:
        if not is_s3(uri):
            return Path(self.storage.check_allowed(uri).path)
        key = sha256 or uri
        with self._lock:
            if key in self._files:
                self._files.move_to_end(key)
                return self._files[key]
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="talkfarm-takes-")
            folder = Path(self._folder.name) / key[:32]
            folder.mkdir(exist_ok=True)
            path = self.storage.fetch(uri, folder)
            if sha256 is not None and sha256_file(path) != sha256:
                path.unlink(missing_ok=True)
                raise BadInputError("the take changed in storage while it was being dubbed", uri)
            self._files[key] = path
            while len(self._files) > self.kept:
                _, old = self._files.popitem(last=False)
                old.unlink(missing_ok=True)
            return path

    def close(self) -> None:
        with self._lock:
            self._files.clear()
            if self._folder is not None:
                self._folder.cleanup()
                self._folder = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:   # interpreter shutdown: the folder may already be gone
            pass

