"""The driver's early reuse check: name a request's render from its inputs' hashes alone.

A render id needs only the two inputs' sha256 (plus controls and model versions,
``core.identity.render_id``), not the face alignment or the audio features. The stages
hash each input they read; the driver remembers those hashes under the input's URI and its
fingerprint (size and modification time, or size and ETag), so a later row naming the same,
unchanged input is named -- and, when that render is finished, reused -- before it is sent to
alignment. An input the driver has not seen hashed yet simply takes the normal path; the
driver never reads input bytes itself.

:func:`link_render` then puts the finished render at the request's output without its bytes
passing through the driver.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from core.errors import TalkfarmError
from core.identity import render_id
from core.provenance import SIDECAR_SUFFIX
from core.schemas import RenderRequest
from core.storage import Storage
from pipeline.graph import model_versions
from pipeline.jobstate import JobStore

log = logging.getLogger(__name__)

# Distinct inputs remembered (URI -> fingerprint, sha256): ~200 bytes each, so 100,000 inputs
# stay around 20 MB; older entries are dropped first.
MAX_INPUTS = 100_000


class InputHashes:
    """sha256 of inputs the stages have hashed, valid while the input's fingerprint holds.

    With a job ``store`` they are also recorded there (:meth:`JobStore.record_input`), and an
    input this driver has not seen is looked up there once: a resubmitted job's driver names
    its rows without sending any through the stages.
    """

    def __init__(self, storage: Storage, max_inputs: int = MAX_INPUTS, store: JobStore | None = None):
        self.storage = storage
        self.max_inputs = max_inputs
        self.store = store
        self._known: dict[str, tuple[str, str]] = {}      # URI -> (fingerprint, sha256), oldest first
        self._asked: set[str] = set()                      # URIs looked up in the store (found or not)

    def learn(self, uri: str, sha256: str | None) -> None:
        """A stage hashed ``uri``: remember it with the input's current fingerprint."""
        if not sha256 or uri in self._known:
            return
        fingerprint = self.storage.fingerprint(uri)
        if fingerprint is None:
            return
        self._remember(uri, (fingerprint, sha256))
        if self.store is not None:
            self.store.record_input(uri, fingerprint, sha256)

    def _remember(self, uri: str, known: tuple[str, str]) -> None:
        self._known[uri] = known
        if len(self._known) > self.max_inputs:
            del self._known[next(iter(self._known))]

    def sha256(self, uri: str) -> str | None:
        """The input's sha256 if it was hashed before and is unchanged since, else None."""
        known = self._known.get(uri)
        if known is None and self.store is not None and uri not in self._asked:
            if len(self._asked) > self.max_inputs:
                self._asked.clear()
            self._asked.add(uri)
            known = self.store.lookup_input(uri)
            if known is not None:
                self._remember(uri, known)
        if known is None:
            return None
        fingerprint, digest = known
        if self.storage.fingerprint(uri) != fingerprint:
            del self._known[uri]
            return None
        return digest

    def render_id(self, request: RenderRequest) -> tuple[str, str, str] | None:
        """(render id, image sha256, audio sha256) of ``request`` from known hashes, or None.
        Never for a dub: its frame rate, part of its identity, is the take's, known once read."""
        if request.is_dub:
            return None
        image, audio = self.sha256(request.image), self.sha256(request.audio)
        if image is None or audio is None:
            return None
        return render_id(image, audio, request.controls, model_versions(request.controls)), image, audio


def link_render(storage: Storage, previous: dict[str, Any], request: RenderRequest) -> bool:
    """Make a finished render (``previous``: its job-store record) available at the request's
    output: its provenance sidecar rewritten with the request's id, its video hard-linked or
    copied server-side. False if either is gone or outside this job's prefixes (then the render
    runs again)."""
    source, output = previous["result"].get("output"), request.output
    if not source:
        return False
    if not (storage.is_allowed(source) and storage.is_allowed(source + SIDECAR_SUFFIX)):
        return False       # another job's output, outside this job's prefixes: render afresh
    try:
        if not storage.exists(source) or not storage.exists(source + SIDECAR_SUFFIX):
            return False
        if source != output:
            record = json.loads(storage.read_bytes(source + SIDECAR_SUFFIX))
            record["request_id"] = request.id
            # Sidecar first: a video that exists always has its provenance beside it. Not fsynced
            # (the fsync was a third of a reused row's time): the write is atomic, and a killed
            # driver loses nothing from the page cache, while its row is committed done only
            # after this returns. Only a power loss can lose it after that commit reached the
            # disk -- the window the job store's own unsynced commits have.
            storage.write_bytes(output + SIDECAR_SUFFIX, json.dumps(record, indent=2, sort_keys=True).encode(),
                                durable=False)
            storage.copy(source, output)     # server-side / a hard link: the video never passes through here
        return True
    except (TalkfarmError, OSError, ValueError) as err:   # gone, unreadable or a bad sidecar
        log.warning("request %s: not reusing an earlier render (%s: %s); rendering it", request.id,
                    type(err).__name__, err)
        return False
