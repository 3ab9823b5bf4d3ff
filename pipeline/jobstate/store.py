"""The job store's interface and the records it hands out (see the package docstring)."""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, NamedTuple, Sequence

from core.errors import TalkfarmError

RequestStatus = Literal["pending", "running", "done", "failed", "cancelled"]
STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed", "cancelled")
PRIORITY_LIMIT = 1 << 20
"""Priorities must satisfy ``-PRIORITY_LIMIT < priority < PRIORITY_LIMIT`` (higher runs first)."""
DEFAULT_SQLITE_PATH = Path("~/.cache/talkfarm/jobs.sqlite").expanduser()
REDIS_URL_ENV = "TALKFARM_REDIS_URL"

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@=+-]{0,199}$")


class JobNotFoundError(TalkfarmError):
    """No job with that id in the store."""

    def __init__(self, job_id: str):
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class RequestSpec(NamedTuple):
    """One request to register in a job. A plain ``(request_id, render_id, priority)`` tuple works too.

    ``render_id`` may be ``None`` when it is not known yet (it hashes the inputs' contents);
    fill it in later with :meth:`JobStore.set_render_id`. ``request``: what the row renders,
    as JSON text (the driver reads it back with each claim, so it need not hold the job's
    requests in memory); ``None`` keeps what the store has.
    """

    request_id: str
    render_id: str | None = None
    priority: int = 0
    request: str | None = None


class ClaimedRequest(NamedTuple):
    """A request :meth:`JobStore.claim` handed to a driver: its id, the claims it has had (this
    one included) and its ``request`` JSON text as registered (``None`` if none was)."""

    request_id: str
    attempts: int
    request: str | None = None


class Finished(NamedTuple):
    """A request to mark done with :meth:`JobStore.finish`: its JSON-able ``result``, the
    ``render_id`` to set on it (``None``: keep), and ``new_render``: also remember the render id
    with this result for reuse (:meth:`JobStore.record_render`)."""

    request_id: str
    result: dict[str, Any]
    render_id: str | None = None
    new_render: bool = False


@dataclass(frozen=True)
class RequestState:
    """Where one request stands."""

    request_id: str
    render_id: str | None
    status: RequestStatus
    priority: int = 0
    attempts: int = 0
    error_stage: str | None = None
    error_message: str | None = None
    result: dict[str, Any] | None = None
    updated_at: datetime | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Earlier runs requeued by ``talkfarm retry``: status, attempts, error stage and message, time."""
    request: str | None = None
    """The request as registered (JSON text, :attr:`RequestSpec.request`), or ``None``."""


@dataclass(frozen=True)
class JobStatus:
    """Summary of a job: counts by status plus its metadata."""

    job_id: str
    counts: dict[str, int]
    cancelled: bool
    created_at: datetime
    updated_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> bool:
        """Nothing pending or running (done, failed and cancelled are final until a retry)."""
        return self.counts.get("pending", 0) == 0 and self.counts.get("running", 0) == 0


@dataclass(frozen=True)
class DeadLetter:
    """A request that failed for good: the stage, the message, how many runs it got."""

    request_id: str
    render_id: str | None
    stage: str
    message: str
    attempts: int
    at: datetime


def to_utc(ts: float | str | None) -> datetime | None:
    """A stored time (Unix seconds, as a number or text; empty: none) as an aware UTC datetime."""
    if ts is None or ts == "":
        return None
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


def history_entry(status: str | None, attempts: Any, stage: str | None, message: str | None,
                  at: float | None) -> dict[str, Any]:
    """One earlier run of a request, as kept in :attr:`RequestState.history`."""
    return {"status": status, "attempts": int(attempts or 0), "stage": stage or None, "message": message or None,
            "at": at}


def check_job_id(job_id: str) -> str:
    """``job_id`` if it is a valid job id, else ValueError (it becomes part of keys and file names)."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"bad job id {job_id!r}: use letters, digits and . _ : @ = + - (max 200)")
    return job_id


def request_specs(requests: Iterable[RequestSpec | tuple]) -> list[RequestSpec]:
    """``requests`` as :class:`RequestSpec` records, checked (non-empty ids, priorities in range)."""
    out = []
    for item in requests:
        spec = RequestSpec(*item)
        if not spec.request_id:
            raise ValueError("request id must not be empty")
        if not isinstance(spec.priority, int) or not -PRIORITY_LIMIT < spec.priority < PRIORITY_LIMIT:
            raise ValueError(f"priority of {spec.request_id!r} must be an int within +-{PRIORITY_LIMIT}")
        out.append(spec)
    return out


class JobStore(abc.ABC):
    """Job / request state shared by the submitter, the driver and the CLI.

    All methods are safe to call from several processes at once. Methods that take a
    ``job_id`` raise :class:`JobNotFoundError` for an unknown job (``create_job`` excepted).
    Stores are picklable (connections are reopened lazily in the receiving process).
    """

    # -- jobs ------------------------------------------------------------------------------

    @abc.abstractmethod
    def create_job(self, job_id: str, requests: Iterable[RequestSpec | tuple], meta: dict[str, Any] | None = None) -> int:
        """Create the job (if new) and register its requests as pending.

        Idempotent: request ids already in the job keep their state (only a given
        ``RequestSpec.request`` replaces theirs: the latest request file is what renders) and
        ``meta`` of an existing job is kept, so a re-submission adds only what is new. Requests
        added to a cancelled job start as ``cancelled``. Returns how many requests were added.
        """

    @abc.abstractmethod
    def list_jobs(self) -> list[str]:
        """Job ids, newest first."""

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> None:
        """Forget the job and its requests (render idempotency records are kept)."""

    @abc.abstractmethod
    def job_status(self, job_id: str) -> JobStatus:
        """Counts by status (every status present, zeros included), times, meta, cancelled flag."""

    def request_states(self, job_id: str) -> list[RequestState]:
        """Every request of the job, in submission order (all in memory: for small jobs and
        tests; a driver pages with :meth:`iter_request_states`)."""
        return list(self.iter_request_states(job_id))

    @abc.abstractmethod
    def iter_request_states(self, job_id: str, page_size: int = 1000) -> Iterator[RequestState]:
        """Every request of the job, in submission order, read ``page_size`` at a time (each
        page one consistent read), so a job of any length is walked in flat memory."""

    @abc.abstractmethod
    def dead_letters(self, job_id: str) -> list[DeadLetter]:
        """Requests that failed for good, oldest first (cleared by :meth:`requeue_failed`)."""

    # -- the work loop ---------------------------------------------------------------------

    @abc.abstractmethod
    def claim(self, job_id: str, limit: int = 1) -> list[ClaimedRequest]:
        """Take up to ``limit`` pending requests (highest priority, then oldest), mark them
        running and count an attempt; in one transaction, with each one's attempts and
        registered request. Returns ``[]`` once the job is cancelled or drained."""

    def claim_next(self, job_id: str, limit: int = 1) -> list[str]:
        """:meth:`claim`, ids only."""
        return [claimed.request_id for claimed in self.claim(job_id, limit)]

    @abc.abstractmethod
    def finish(self, job_id: str, finished: Sequence[Finished]) -> None:
        """Mark requests done, as :meth:`mark_done` does each, in one transaction (SQLite) or
        one script (Redis; the ``new_render`` records are written just before it, so a render
        is known whenever a request that made it is done). A driver commits the rows finished
        in one turn of its loop together."""

    def mark_done(self, job_id: str, request_id: str, result: dict[str, Any] | None = None) -> None:
        """Record success with a JSON-able ``result`` (output uri, sha256, seconds...).

        Accepted from any state (a running request of a cancelled job may still finish).
        """
        self.finish(job_id, [Finished(request_id, result or {})])

    @abc.abstractmethod
    def mark_failed(self, job_id: str, request_id: str, stage: str, message: str, *,
                    transient: bool = False, max_attempts: int = 3) -> RequestStatus:
        """Record a failure; returns the new status.

        ``transient`` and ``attempts < max_attempts`` -> back to ``pending`` (``cancelled`` if the
        job was cancelled meanwhile); otherwise ``failed`` plus a dead letter. The error
        stage / message are kept on the request either way (as its last error).
        """

    @abc.abstractmethod
    def set_render_id(self, job_id: str, request_id: str, render_id: str) -> None:
        """Fill in a request's render id once its inputs have been hashed."""

    @abc.abstractmethod
    def requeue_failed(self, job_id: str, *, include_cancelled: bool = True) -> int:
        """For ``talkfarm retry``: failed (and, by default, cancelled) requests back to pending
        with attempts reset, each one's outcome so far appended to its ``history``; clears the
        dead letters, and un-cancels the job when ``include_cancelled``. Returns how many were
        requeued."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> int:
        """Stop the job: no more claims, pending requests become ``cancelled`` (returned count).
        Running requests may still finish or fail."""

    @abc.abstractmethod
    def is_cancelled(self, job_id: str) -> bool:
        """True once :meth:`cancel` was called (until :meth:`requeue_failed` resumes it)."""

    @abc.abstractmethod
    def reset_running(self, job_id: str, *, max_attempts: int | None = None) -> int:
        """After a driver / worker crash: running requests back to pending (returned count).

        With ``max_attempts``, a request that already used all its attempts (a poison pill that
        keeps killing workers) goes to ``failed`` with stage ``worker`` instead.
        """

    # -- the driver lease ------------------------------------------------------------------

    @abc.abstractmethod
    def acquire_lease(self, job_id: str, holder: str, ttl_s: float) -> tuple[str, float]:
        """Give the job's driver lease to ``holder`` for ``ttl_s`` seconds if nobody else holds
        a live one (an expired lease is taken over; the holder's own is extended).

        Returns ``(holder of the lease now, seconds it has left)``: the caller has the lease
        when the returned holder is its own. Works for a job not created yet.
        """

    @abc.abstractmethod
    def renew_lease(self, job_id: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease to ``ttl_s`` seconds from now; False if it no longer holds
        it (expired and taken over, or lost with the store's data)."""

    @abc.abstractmethod
    def release_lease(self, job_id: str, holder: str) -> None:
        """Give the lease up (only if ``holder`` still has it)."""

    # -- render idempotency ----------------------------------------------------------------

    @abc.abstractmethod
    def lookup_render(self, render_id: str) -> dict[str, Any] | None:
        """The result recorded for a finished render id, or ``None``."""

    @abc.abstractmethod
    def record_render(self, render_id: str, result: dict[str, Any]) -> None:
        """Remember that ``render_id`` is rendered (``result``: output uri, sha256...)."""

    # -- input hashes ----------------------------------------------------------------------

    @abc.abstractmethod
    def lookup_input(self, uri: str) -> tuple[str, str] | None:
        """``(fingerprint, sha256)`` recorded for an input URI, or ``None``."""

    @abc.abstractmethod
    def record_input(self, uri: str, fingerprint: str, sha256: str) -> None:
        """Remember an input's sha256 with the fingerprint (size and mtime or ETag) it had when
        hashed, so a later driver names a resubmitted row's render without hashing it again."""

    def close(self) -> None:
        """Release connections (the store reopens them if used again)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
