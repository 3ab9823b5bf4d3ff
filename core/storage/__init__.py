"""Storage behind URIs: local paths / ``file://`` (the embedded default) and ``s3://bucket/key``.

One :class:`Storage` object serves both kinds. S3 goes through boto3 with the standard AWS
settings (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``, and the usual credentials chain: env keys, shared config, instance or
IRSA roles). Nothing talkfarm-specific is read from the environment.

Guarantees:

* **Atomic writes** -- :meth:`Storage.put` / :meth:`Storage.write_bytes` never leave a
  half-written final object. S3: upload to ``<key>.partial-<uuid>`` (multipart above
  ``multipart_threshold``), server-side copy to ``<key>``, delete the temporary key.
  Local: write ``.<name>.partial-<uuid>`` in the destination folder, fsync, ``os.replace``.
  A crash between the steps can leave a ``.partial-`` object behind (never a final one);
  :meth:`Storage.list` hides them and an S3 lifecycle rule on ``*.partial-*`` can sweep them.
* **Retries** -- transient S3 failures (throttling, 5xx, connection / read timeouts) are
  retried with exponential backoff + jitter, then raised as
  :class:`~core.errors.TransientError`. botocore's own retries are switched off so
  there is one retry policy, this one.
* **Clear permanent errors** -- a missing object raises
  ``BadInputError("object not found", uri)``; a URI outside ``allowed_prefixes`` raises
  ``BadInputError("outside the allowed prefixes", uri)`` before anything is looked up, so the
  message never tells whether such an object exists; other 4xx (access denied,
  no such bucket) raise ``BadInputError`` with S3's message.
* **Picklable** -- the boto3 client is created lazily and dropped on pickling, so a
  ``Storage`` can be passed into Ray actors / tasks; each process builds its own client.

Modules: ``uri`` (parsing and joining URIs), ``prefixes`` (the allow-list of a confined job),
``s3`` (the boto3 client and the retry policy), ``local`` (atomic local writes), ``store``
(:class:`Storage` itself); this package exports the public names.
"""

from core.storage.prefixes import OUTSIDE_MESSAGE
from core.storage.store import Storage
from core.storage.uri import PARTIAL_MARKER, ParsedURI, is_s3, join_uri, parse_uri

__all__ = [
    "Storage",
    "ParsedURI",
    "parse_uri",
    "is_s3",
    "join_uri",
    "PARTIAL_MARKER",
    "OUTSIDE_MESSAGE",
]
