"""The driver's early reuse check: name a request's render from its inputs' hashes alone.

A render id needs only the two inputs' sha256 (plus controls and model versions,
``core.identity.render_id``), not the face alignment or the audio features. The stages
hash each input they read; the driver remembers those hashes under the input's URI and its
fingerprint (size and modification time, or size and ETag), so a later row naming the same,
unchanged input is named -- and, when that render is finished, reused -- before it is sent to
alignment. An input the driver has not seen hashed yet simply takes the normal path; the
driver never reads input bytes itself.
"""

from __future__ import annotations

from core.identity import render_id
from core.schemas import RenderRequest
from core.storage import Storage
from pipeline.graph import model_versions

# Distinct inputs remembered (URI -> fingerprint, sha256): ~200 bytes each, so 100,000 inputs
# stay around 20 MB; older entries are dropped first.
MAX_INPUTS = 100_000


class InputHashes:
    """sha256 of inputs the stages have hashed, valid while the input's fingerprint holds."""

    def __init__(self, storage: Storage, max_inputs: int = MAX_INPUTS):
        self.storage = storage
        self.max_inputs = max_inputs
        self._known: dict[str, tuple[str, str]] = {}      # URI -> (fingerprint, sha256), oldest first

    def learn(self, uri: str, sha256: str | None) -> None:
        """A stage hashed ``uri``: remember it with the input's current fingerprint."""
        if not sha256 or uri in self._known:
            return
        fingerprint = self.storage.fingerprint(uri)
        if fingerprint is None:
            return
        self._known[uri] = (fingerprint, sha256)
        if len(self._known) > self.max_inputs:
            del self._known[next(iter(self._known))]

    def sha256(self, uri: str) -> str | None:
        """The input's sha256 if it was hashed before and is unchanged since, else None."""
        known = self._known.get(uri)
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
