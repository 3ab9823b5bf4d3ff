"""Job state: which requests of a job are pending, running, done, failed or cancelled.

One interface, :class:`JobStore`, two backends:

* :class:`SQLiteJobStore` -- the embedded default (one file, no server). WAL journal, every
  write a short ``BEGIN IMMEDIATE`` transaction, so several processes on one machine (CLI,
  driver, local Ray workers) can share it. Not for network filesystems (WAL needs shared
  memory); use Redis for a cluster.
* :class:`RedisJobStore` -- for a Ray cluster. All state transitions are Lua scripts (atomic on
  the server), kept as files in ``lua/``; the key layout is in ``redis_backend.py``.

Modules: ``store`` (the :class:`JobStore` interface and its records), ``sqlite_backend``,
``redis_backend``, ``lua/*.lua``; this package exports the public names.

Life of a request::

    pending --claim--> running --finish / mark_done--> done
                               |--mark_failed(transient, attempts < max)--> pending
                               |--mark_failed(otherwise)--> failed (+ dead letter)
    pending --cancel--> cancelled;  failed/cancelled --requeue_failed--> pending (attempts reset)
    running --reset_running (after a crash)--> pending

``attempts`` counts claims, so ``mark_failed(..., max_attempts=3)`` gives a request three runs.
Claims are highest priority first, then submission order.

One driver per job: :meth:`JobStore.acquire_lease` gives the job to one driver for ``ttl_s``
seconds; the holder renews it (:meth:`JobStore.renew_lease`) well before it expires and
releases it when done. A driver that dies stops renewing, so its lease expires and another
driver may take the job over (``pipeline.lease`` wraps this).

Idempotency across jobs: :meth:`JobStore.record_render` remembers a finished render id with its
result; :meth:`JobStore.lookup_render` lets the graph skip a render already done anywhere
(then call ``mark_done`` with the remembered result). :meth:`JobStore.record_input` /
:meth:`JobStore.lookup_input` keep inputs' sha256 with their fingerprints, so a later driver
names a resubmitted row's render without hashing its inputs again.

At scale: a driver takes rows with :meth:`JobStore.claim` (their attempts and registered
requests with them), commits the rows a turn finished with one :meth:`JobStore.finish`, and
reads states page by page (:meth:`JobStore.iter_request_states`).
"""

from __future__ import annotations

import os

from pipeline.jobstate.redis_backend import RedisJobStore
from pipeline.jobstate.sqlite_backend import SQLiteJobStore
from pipeline.jobstate.store import (
    DEFAULT_SQLITE_PATH,
    PRIORITY_LIMIT,
    REDIS_URL_ENV,
    STATUSES,
    ClaimedRequest,
    DeadLetter,
    Finished,
    JobNotFoundError,
    JobStatus,
    JobStore,
    RequestSpec,
    RequestState,
    RequestStatus,
)

__all__ = [
    "JobStore", "SQLiteJobStore", "RedisJobStore", "open_job_store",
    "RequestSpec", "RequestState", "ClaimedRequest", "Finished", "JobStatus", "DeadLetter", "JobNotFoundError",
    "RequestStatus", "STATUSES", "PRIORITY_LIMIT", "DEFAULT_SQLITE_PATH", "REDIS_URL_ENV",
]


def open_job_store(url: str | None = None, sqlite_path: str | os.PathLike = DEFAULT_SQLITE_PATH) -> JobStore:
    """The job store for ``url``: Redis for ``redis://`` / ``rediss://`` / ``unix://`` URLs,
    SQLite for ``sqlite:///path`` or when no URL is given (``url`` falls back to the
    ``TALKFARM_REDIS_URL`` environment variable, then to SQLite at ``sqlite_path``)."""
    url = url or os.environ.get(REDIS_URL_ENV) or None
    if url is None:
        return SQLiteJobStore(sqlite_path)
    lowered = url.lower()
    if lowered.startswith(("redis://", "rediss://", "unix://")):
        return RedisJobStore(url)
    if lowered.startswith("sqlite:///"):
        return SQLiteJobStore(url[len("sqlite:///"):])  # SQLAlchemy style: sqlite:////abs, sqlite:///rel
    raise ValueError(f"unsupported job store URL {url!r}: use redis://, rediss://, unix:// or sqlite:///path")
