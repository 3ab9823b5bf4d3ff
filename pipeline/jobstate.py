"""Job state: which requests of a job are pending, running, done, failed or cancelled.

One interface, :class:`JobStore`, two backends:

* :class:`SQLiteJobStore` -- the embedded default (one file, no server). WAL journal, every
  write a short ``BEGIN IMMEDIATE`` transaction, so several processes on one machine (CLI,
  driver, local Ray workers) can share it. Not for network filesystems (WAL needs shared
  memory); use Redis for a cluster.
* :class:`RedisJobStore` -- for a Ray cluster. All state transitions are Lua scripts (atomic on
  the server). Keys, all under ``talkfarm:`` (``{J}`` is a Redis-Cluster hash tag, so one job's
  keys live in one slot and the scripts stay cluster-safe)::

      talkfarm:jobs                        zset   job_id -> created_at (for listing)
      talkfarm:job:{J}                     hash   created_at, updated_at, cancelled, meta (JSON),
                                                  seq, c:<status> counters
      talkfarm:job:{J}:ids                 list   request ids in submission order
      talkfarm:job:{J}:req:<request_id>    hash   render_id, status, priority, seq, attempts,
                                                  error_stage, error_message, result (JSON), updated_at,
                                                  history (JSON: earlier runs' outcomes, kept by requeue)
      talkfarm:job:{J}:pending             zset   pending request ids, score = -priority * 2**32 + seq
      talkfarm:job:{J}:dead                list   dead letters (JSON)
      talkfarm:job:{J}:lease               string the driver holding the job (expires: PX)
      talkfarm:render:<render_id>          string idempotency record (JSON: output uri, sha256...)

Life of a request::

    pending --claim_next--> running --mark_done--> done
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
(then call ``mark_done`` with the remembered result).
"""

from __future__ import annotations

import abc
import json
import os
import random
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, NamedTuple, TypeVar

from core.errors import TalkfarmError, TransientError

__all__ = [
    "JobStore", "SQLiteJobStore", "RedisJobStore", "open_job_store",
    "RequestSpec", "RequestState", "JobStatus", "DeadLetter", "JobNotFoundError",
    "RequestStatus", "STATUSES", "PRIORITY_LIMIT", "DEFAULT_SQLITE_PATH", "REDIS_URL_ENV",
]

T = TypeVar("T")

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
    fill it in later with :meth:`JobStore.set_render_id`.
    """

    request_id: str
    render_id: str | None = None
    priority: int = 0


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


def _utc(ts: float | str | None) -> datetime | None:
    if ts is None or ts == "":
        return None
    return datetime.fromtimestamp(float(ts), tz=timezone.utc)


def _history_entry(status: str | None, attempts: Any, stage: str | None, message: str | None,
                   at: float | None) -> dict[str, Any]:
    """One earlier run of a request, as kept in :attr:`RequestState.history`."""
    return {"status": status, "attempts": int(attempts or 0), "stage": stage or None, "message": message or None,
            "at": at}


def _check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"bad job id {job_id!r}: use letters, digits and . _ : @ = + - (max 200)")
    return job_id


def _specs(requests: Iterable[RequestSpec | tuple]) -> list[RequestSpec]:
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

        Idempotent: request ids already in the job are left alone and ``meta`` of an existing
        job is kept, so a re-submission adds only what is new. Requests added to a cancelled
        job start as ``cancelled``. Returns how many requests were added.
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

    @abc.abstractmethod
    def request_states(self, job_id: str) -> list[RequestState]:
        """Every request of the job, in submission order."""

    @abc.abstractmethod
    def dead_letters(self, job_id: str) -> list[DeadLetter]:
        """Requests that failed for good, oldest first (cleared by :meth:`requeue_failed`)."""

    # -- the work loop ---------------------------------------------------------------------

    @abc.abstractmethod
    def claim_next(self, job_id: str, limit: int = 1) -> list[str]:
        """Take up to ``limit`` pending requests (highest priority, then oldest), mark them
        running and count an attempt. Returns ``[]`` once the job is cancelled or drained."""

    @abc.abstractmethod
    def mark_done(self, job_id: str, request_id: str, result: dict[str, Any] | None = None) -> None:
        """Record success with a JSON-able ``result`` (output uri, sha256, seconds...).

        Accepted from any state (a running request of a cancelled job may still finish).
        """

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

    def close(self) -> None:
        """Release connections (the store reopens them if used again)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ======================================================================================
# SQLite
# ======================================================================================

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0, meta TEXT NOT NULL DEFAULT '{}', seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS requests (
    job_id TEXT NOT NULL, request_id TEXT NOT NULL, render_id TEXT, priority INTEGER NOT NULL,
    seq INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    error_stage TEXT, error_message TEXT, result TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (job_id, request_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (job_id, status, priority DESC, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, request_id TEXT NOT NULL, render_id TEXT,
    stage TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_by_job ON dead_letters (job_id, id);
CREATE TABLE IF NOT EXISTS renders (render_id TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (job_id TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
"""


class SQLiteJobStore(JobStore):
    """Job state in one SQLite file (the embedded default).

    Safe across processes and threads on one machine: WAL journal (readers never block the
    writer), ``busy_timeout`` so writers wait for each other, and every state change in one
    short ``BEGIN IMMEDIATE`` transaction (so two processes never claim the same request).
    A lock that outlasts ``timeout_s`` raises :class:`TransientError`.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_SQLITE_PATH, *, timeout_s: float = 30.0):
        self.path = Path(path).expanduser()
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                db = self._db()
                db.executescript(_SCHEMA)
                if "history" not in {row["name"] for row in db.execute("PRAGMA table_info(requests)")}:
                    db.execute("ALTER TABLE requests ADD COLUMN history TEXT")   # a store from before history
            except sqlite3.OperationalError as exc:
                raise TransientError(f"job store {self.path} is busy: {exc}") from exc

    def __repr__(self) -> str:
        return f"SQLiteJobStore({str(self.path)!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout_s": self.timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], timeout_s=state["timeout_s"])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # new process (fork): own connection
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise TransientError(f"job store {self.path} is busy: {exc}") from exc
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            else:
                try:
                    db.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    db.execute("ROLLBACK")
                    raise TransientError(f"job store {self.path} is busy: {exc}") from exc

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db().execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise TransientError(f"job store {self.path} is busy: {exc}") from exc

    @staticmethod
    def _job_row(db: sqlite3.Connection, job_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFoundError(job_id)
        return row

    @staticmethod
    def _touch(db: sqlite3.Connection, job_id: str, now: float) -> None:
        db.execute("UPDATE jobs SET updated_at=? WHERE job_id=?", (now, job_id))

    # -- jobs

    def create_job(self, job_id, requests, meta=None) -> int:
        _check_job_id(job_id)
        specs = _specs(requests)
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO jobs (job_id, created_at, updated_at, meta) VALUES (?,?,?,?)",
                       (job_id, now, now, json.dumps(meta or {})))
            job = self._job_row(db, job_id)
            status = "cancelled" if job["cancelled"] else "pending"
            seq = job["seq"]
            added = 0
            for spec in specs:
                cur = db.execute(
                    "INSERT OR IGNORE INTO requests (job_id, request_id, render_id, priority, seq, status, updated_at)"
                    " VALUES (?,?,?,?,?,?,?)", (job_id, spec.request_id, spec.render_id, spec.priority, seq + 1, status, now))
                if cur.rowcount:
                    seq += 1
                    added += 1
            db.execute("UPDATE jobs SET seq=?, updated_at=? WHERE job_id=?", (seq, now, job_id))
        return added

    def list_jobs(self) -> list[str]:
        return [r["job_id"] for r in self._read("SELECT job_id FROM jobs ORDER BY created_at DESC, job_id")]

    def delete_job(self, job_id) -> None:
        with self._tx() as db:
            self._job_row(db, job_id)
            for table in ("requests", "dead_letters", "jobs"):
                db.execute(f"DELETE FROM {table} WHERE job_id=?", (job_id,))

    def job_status(self, job_id) -> JobStatus:
        with self._lock:
            db = self._db()
            db.execute("BEGIN")  # one consistent snapshot for the job row and the counts
            try:
                job = self._job_row(db, job_id)
                counts = dict.fromkeys(STATUSES, 0)
                for row in db.execute("SELECT status, COUNT(*) AS n FROM requests WHERE job_id=? GROUP BY status",
                                      (job_id,)):
                    counts[row["status"]] = row["n"]
            finally:
                db.execute("COMMIT")
        return JobStatus(job_id=job_id, counts=counts, cancelled=bool(job["cancelled"]),
                         created_at=_utc(job["created_at"]), updated_at=_utc(job["updated_at"]),
                         meta=json.loads(job["meta"]))

    def request_states(self, job_id) -> list[RequestState]:
        with self._tx() as db:
            self._job_row(db, job_id)
            rows = db.execute("SELECT * FROM requests WHERE job_id=? ORDER BY seq", (job_id,)).fetchall()
        return [RequestState(request_id=r["request_id"], render_id=r["render_id"], status=r["status"],
                             priority=r["priority"], attempts=r["attempts"], error_stage=r["error_stage"],
                             error_message=r["error_message"],
                             result=None if r["result"] is None else json.loads(r["result"]),
                             updated_at=_utc(r["updated_at"]), history=json.loads(r["history"] or "[]"))
                for r in rows]

    def dead_letters(self, job_id) -> list[DeadLetter]:
        with self._tx() as db:
            self._job_row(db, job_id)
            rows = db.execute("SELECT * FROM dead_letters WHERE job_id=? ORDER BY id", (job_id,)).fetchall()
        return [DeadLetter(r["request_id"], r["render_id"], r["stage"], r["message"], r["attempts"], _utc(r["at"]))
                for r in rows]

    # -- work loop

    def claim_next(self, job_id, limit=1) -> list[str]:
        if limit <= 0:
            return []
        now = time.time()
        with self._tx() as db:
            if self._job_row(db, job_id)["cancelled"]:
                return []
            ids = [r["request_id"] for r in db.execute(
                "SELECT request_id FROM requests WHERE job_id=? AND status='pending' ORDER BY priority DESC, seq"
                " LIMIT ?", (job_id, limit))]
            db.executemany("UPDATE requests SET status='running', attempts=attempts+1, updated_at=?"
                           " WHERE job_id=? AND request_id=?", [(now, job_id, rid) for rid in ids])
            if ids:
                self._touch(db, job_id, now)
        return ids

    def _request(self, db, job_id, request_id) -> sqlite3.Row:
        row = db.execute("SELECT * FROM requests WHERE job_id=? AND request_id=?", (job_id, request_id)).fetchone()
        if row is None:
            raise KeyError(f"job {job_id!r} has no request {request_id!r}")
        return row

    def mark_done(self, job_id, request_id, result=None) -> None:
        now = time.time()
        with self._tx() as db:
            self._job_row(db, job_id)
            self._request(db, job_id, request_id)
            db.execute("UPDATE requests SET status='done', result=?, error_stage=NULL, error_message=NULL, updated_at=?"
                       " WHERE job_id=? AND request_id=?", (json.dumps(result or {}), now, job_id, request_id))
            self._touch(db, job_id, now)

    def mark_failed(self, job_id, request_id, stage, message, *, transient=False, max_attempts=3) -> RequestStatus:
        now = time.time()
        with self._tx() as db:
            job = self._job_row(db, job_id)
            req = self._request(db, job_id, request_id)
            if transient and req["attempts"] < max_attempts:
                status = "cancelled" if job["cancelled"] else "pending"
            else:
                status = "failed"
                if req["status"] != "failed":
                    db.execute("INSERT INTO dead_letters (job_id, request_id, render_id, stage, message, attempts, at)"
                               " VALUES (?,?,?,?,?,?,?)", (job_id, request_id, req["render_id"], stage, message,
                                                           req["attempts"], now))
            db.execute("UPDATE requests SET status=?, error_stage=?, error_message=?, updated_at=?"
                       " WHERE job_id=? AND request_id=?", (status, stage, message, now, job_id, request_id))
            self._touch(db, job_id, now)
        return status

    def set_render_id(self, job_id, request_id, render_id) -> None:
        with self._tx() as db:
            self._job_row(db, job_id)
            self._request(db, job_id, request_id)
            db.execute("UPDATE requests SET render_id=? WHERE job_id=? AND request_id=?", (render_id, job_id, request_id))

    def requeue_failed(self, job_id, *, include_cancelled=True) -> int:
        now = time.time()
        statuses = ("failed", "cancelled") if include_cancelled else ("failed", "failed")
        with self._tx() as db:
            self._job_row(db, job_id)
            rows = db.execute("SELECT * FROM requests WHERE job_id=? AND status IN (?,?)", (job_id, *statuses)).fetchall()
            for r in rows:
                history = [*json.loads(r["history"] or "[]"), _history_entry(r["status"], r["attempts"],
                                                                            r["error_stage"], r["error_message"], now)]
                db.execute("UPDATE requests SET status='pending', attempts=0, history=?, updated_at=?"
                           " WHERE job_id=? AND request_id=?", (json.dumps(history), now, job_id, r["request_id"]))
            db.execute("DELETE FROM dead_letters WHERE job_id=?", (job_id,))
            if include_cancelled:
                db.execute("UPDATE jobs SET cancelled=0 WHERE job_id=?", (job_id,))
            self._touch(db, job_id, now)
        return len(rows)

    def cancel(self, job_id) -> int:
        now = time.time()
        with self._tx() as db:
            self._job_row(db, job_id)
            db.execute("UPDATE jobs SET cancelled=1 WHERE job_id=?", (job_id,))
            cur = db.execute("UPDATE requests SET status='cancelled', updated_at=? WHERE job_id=? AND status='pending'",
                             (now, job_id))
            self._touch(db, job_id, now)
        return cur.rowcount

    def is_cancelled(self, job_id) -> bool:
        rows = self._read("SELECT cancelled FROM jobs WHERE job_id=?", (job_id,))
        if not rows:
            raise JobNotFoundError(job_id)
        return bool(rows[0]["cancelled"])

    def reset_running(self, job_id, *, max_attempts=None) -> int:
        now = time.time()
        with self._tx() as db:
            job = self._job_row(db, job_id)
            back = "cancelled" if job["cancelled"] else "pending"
            reset = 0
            for req in db.execute("SELECT * FROM requests WHERE job_id=? AND status='running'", (job_id,)).fetchall():
                if max_attempts is not None and req["attempts"] >= max_attempts:
                    message = f"worker lost while rendering ({req['attempts']} of {max_attempts} attempts used)"
                    db.execute("INSERT INTO dead_letters (job_id, request_id, render_id, stage, message, attempts, at)"
                               " VALUES (?,?,?,?,?,?,?)", (job_id, req["request_id"], req["render_id"], "worker",
                                                           message, req["attempts"], now))
                    db.execute("UPDATE requests SET status='failed', error_stage='worker', error_message=?,"
                               " updated_at=? WHERE job_id=? AND request_id=?", (message, now, job_id, req["request_id"]))
                else:
                    db.execute("UPDATE requests SET status=?, updated_at=? WHERE job_id=? AND request_id=?",
                               (back, now, job_id, req["request_id"]))
                    reset += back == "pending"
            self._touch(db, job_id, now)
        return reset

    # -- lease

    def acquire_lease(self, job_id, holder, ttl_s) -> tuple[str, float]:
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT holder, expires_at FROM leases WHERE job_id=?", (job_id,)).fetchone()
            if row is not None and row["holder"] != holder and row["expires_at"] > now:
                return row["holder"], row["expires_at"] - now
            db.execute("INSERT OR REPLACE INTO leases (job_id, holder, expires_at) VALUES (?,?,?)",
                       (job_id, holder, now + ttl_s))
        return holder, ttl_s

    def renew_lease(self, job_id, holder, ttl_s) -> bool:
        now = time.time()
        with self._tx() as db:
            cur = db.execute("UPDATE leases SET expires_at=? WHERE job_id=? AND holder=? AND expires_at>?",
                             (now + ttl_s, job_id, holder, now))
        return cur.rowcount == 1

    def release_lease(self, job_id, holder) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE job_id=? AND holder=?", (job_id, holder))

    # -- idempotency

    def lookup_render(self, render_id) -> dict[str, Any] | None:
        rows = self._read("SELECT result FROM renders WHERE render_id=?", (render_id,))
        return json.loads(rows[0]["result"]) if rows else None

    def record_render(self, render_id, result) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO renders (render_id, result, at) VALUES (?,?,?)",
                       (render_id, json.dumps(result), time.time()))


# ======================================================================================
# Redis
# ======================================================================================

_LUA_HELPERS = """
local function set_status(job, rkey, new, now)
  local old = redis.call('HGET', rkey, 'status')
  if old ~= new then
    redis.call('HINCRBY', job, 'c:' .. old, -1)
    redis.call('HINCRBY', job, 'c:' .. new, 1)
    redis.call('HSET', rkey, 'status', new)
  end
  redis.call('HSET', rkey, 'updated_at', now)
end
local function score(rkey)
  local prio = tonumber(redis.call('HGET', rkey, 'priority'))
  local seq = tonumber(redis.call('HGET', rkey, 'seq'))
  return -prio * 4294967296 + seq
end
local function need_job(job)
  if redis.call('EXISTS', job) == 0 then return redis.error_reply('NOJOB') end
  return nil
end
local function need_req(rkey)
  if redis.call('EXISTS', rkey) == 0 then return redis.error_reply('NOREQ') end
  return nil
end
local function dead(deadkey, rkey, rid, stage, message, now)
  redis.call('RPUSH', deadkey, cjson.encode({request_id = rid, render_id = redis.call('HGET', rkey, 'render_id'),
    stage = stage, message = message, attempts = tonumber(redis.call('HGET', rkey, 'attempts')),
    at = tonumber(now)}))
end
"""

# KEYS: job, pending, ids   ARGV: now, meta, reqprefix, (rid, render_id, priority)*
_CREATE = _LUA_HELPERS + """
local job, pending, ids, now, prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]
if redis.call('EXISTS', job) == 0 then
  redis.call('HSET', job, 'created_at', now, 'updated_at', now, 'cancelled', '0', 'meta', ARGV[2], 'seq', 0,
    'c:pending', 0, 'c:running', 0, 'c:done', 0, 'c:failed', 0, 'c:cancelled', 0)
end
local cancelled = redis.call('HGET', job, 'cancelled') == '1'
local status = 'pending'
if cancelled then status = 'cancelled' end
local added = 0
for i = 4, #ARGV, 3 do
  local rid = ARGV[i]
  local rkey = prefix .. rid
  if redis.call('EXISTS', rkey) == 0 then
    local seq = redis.call('HINCRBY', job, 'seq', 1)
    redis.call('HSET', rkey, 'render_id', ARGV[i + 1], 'priority', ARGV[i + 2], 'seq', seq, 'status', status,
      'attempts', 0, 'updated_at', now)
    redis.call('RPUSH', ids, rid)
    redis.call('HINCRBY', job, 'c:' .. status, 1)
    if not cancelled then redis.call('ZADD', pending, score(rkey), rid) end
    added = added + 1
  end
end
if added > 0 then redis.call('HSET', job, 'updated_at', now) end
return added
"""

# KEYS: job, pending   ARGV: now, reqprefix, limit
_CLAIM = _LUA_HELPERS + """
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
if redis.call('HGET', job, 'cancelled') == '1' then return {} end
local ids = redis.call('ZRANGE', pending, 0, tonumber(ARGV[3]) - 1)
for _, rid in ipairs(ids) do
  local rkey = prefix .. rid
  redis.call('ZREM', pending, rid)
  set_status(job, rkey, 'running', now)
  redis.call('HINCRBY', rkey, 'attempts', 1)
end
if #ids > 0 then redis.call('HSET', job, 'updated_at', now) end
return ids
"""

# KEYS: job, pending   ARGV: now, reqprefix, rid, result
_DONE = _LUA_HELPERS + """
local job, pending, now, rid = KEYS[1], KEYS[2], ARGV[1], ARGV[3]
local rkey = ARGV[2] .. rid
local err = need_job(job) or need_req(rkey) if err then return err end
redis.call('ZREM', pending, rid)
set_status(job, rkey, 'done', now)
redis.call('HSET', rkey, 'result', ARGV[4])
redis.call('HDEL', rkey, 'error_stage', 'error_message')
redis.call('HSET', job, 'updated_at', now)
return 'done'
"""

# KEYS: job, pending, dead   ARGV: now, reqprefix, rid, stage, message, transient(0/1), max_attempts
_FAILED = _LUA_HELPERS + """
local job, pending, deadkey, now, rid = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]
local rkey = ARGV[2] .. rid
local err = need_job(job) or need_req(rkey) if err then return err end
local attempts = tonumber(redis.call('HGET', rkey, 'attempts'))
local new
redis.call('HSET', rkey, 'error_stage', ARGV[4], 'error_message', ARGV[5])
if ARGV[6] == '1' and attempts < tonumber(ARGV[7]) then
  if redis.call('HGET', job, 'cancelled') == '1' then
    new = 'cancelled'
  else
    new = 'pending'
    redis.call('ZADD', pending, score(rkey), rid)
  end
else
  new = 'failed'
  redis.call('ZREM', pending, rid)
  if redis.call('HGET', rkey, 'status') ~= 'failed' then dead(deadkey, rkey, rid, ARGV[4], ARGV[5], now) end
end
set_status(job, rkey, new, now)
redis.call('HSET', job, 'updated_at', now)
return new
"""

# KEYS: job, pending, ids, dead   ARGV: now, reqprefix, include_cancelled(0/1)
_REQUEUE = _LUA_HELPERS + """
local job, pending, ids, deadkey, now, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
local inc = ARGV[3] == '1'
if inc then redis.call('HSET', job, 'cancelled', '0') end
local n = 0
for _, rid in ipairs(redis.call('LRANGE', ids, 0, -1)) do
  local rkey = prefix .. rid
  local st = redis.call('HGET', rkey, 'status')
  if st == 'failed' or (inc and st == 'cancelled') then
    local raw = redis.call('HGET', rkey, 'history')
    local history = {}
    if raw then history = cjson.decode(raw) end
    local entry = {status = st, attempts = tonumber(redis.call('HGET', rkey, 'attempts')), at = tonumber(now)}
    entry['stage'] = redis.call('HGET', rkey, 'error_stage') or nil
    entry['message'] = redis.call('HGET', rkey, 'error_message') or nil
    table.insert(history, entry)
    redis.call('HSET', rkey, 'history', cjson.encode(history))
    set_status(job, rkey, 'pending', now)
    redis.call('HSET', rkey, 'attempts', 0)
    redis.call('ZADD', pending, score(rkey), rid)
    n = n + 1
  end
end
redis.call('DEL', deadkey)
redis.call('HSET', job, 'updated_at', now)
return n
"""

# KEYS: job, pending   ARGV: now, reqprefix
_CANCEL = _LUA_HELPERS + """
local job, pending, now, prefix = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
redis.call('HSET', job, 'cancelled', '1', 'updated_at', now)
local ids = redis.call('ZRANGE', pending, 0, -1)
for _, rid in ipairs(ids) do set_status(job, prefix .. rid, 'cancelled', now) end
redis.call('DEL', pending)
return #ids
"""

# KEYS: job, pending, ids, dead   ARGV: now, reqprefix, max_attempts (0 = no limit)
_RESET = _LUA_HELPERS + """
local job, pending, ids, deadkey, now, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2]
local err = need_job(job) if err then return err end
local maxa = tonumber(ARGV[3])
local cancelled = redis.call('HGET', job, 'cancelled') == '1'
local n = 0
for _, rid in ipairs(redis.call('LRANGE', ids, 0, -1)) do
  local rkey = prefix .. rid
  if redis.call('HGET', rkey, 'status') == 'running' then
    local attempts = tonumber(redis.call('HGET', rkey, 'attempts'))
    if maxa > 0 and attempts >= maxa then
      local msg = 'worker lost while rendering (' .. attempts .. ' of ' .. maxa .. ' attempts used)'
      redis.call('HSET', rkey, 'error_stage', 'worker', 'error_message', msg)
      dead(deadkey, rkey, rid, 'worker', msg, now)
      set_status(job, rkey, 'failed', now)
    elseif cancelled then
      set_status(job, rkey, 'cancelled', now)
    else
      set_status(job, rkey, 'pending', now)
      redis.call('ZADD', pending, score(rkey), rid)
      n = n + 1
    end
  end
end
redis.call('HSET', job, 'updated_at', now)
return n
"""


# KEYS: lease   ARGV: holder, ttl_ms   -> {holder now, ms left}
_LEASE = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return {current, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {ARGV[1], tonumber(ARGV[2])}
"""

# KEYS: lease   ARGV: holder, ttl_ms   -> 1 renewed, 0 not the holder
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return 1
"""

# KEYS: lease   ARGV: holder
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisJobStore(JobStore):
    """Job state in Redis (for a Ray cluster); see the module docstring for the key layout.

    Reconnects: every call runs in a retry loop -- on a connection error, timeout or "Redis is
    loading the dataset" reply the connection is dropped and the call retried with exponential
    backoff (``backoff_s`` doubling up to 2 s, jittered) until ``reconnect_timeout_s`` has passed,
    then :class:`TransientError` is raised. So a Redis restart (with AOF / RDB persistence) is
    ridden out transparently. Lua scripts are re-loaded automatically after a restart
    (redis-py ``Script`` falls back from EVALSHA to EVAL on NOSCRIPT).

    Caveat: a state change whose reply is lost in a disconnect is retried; all transitions are
    idempotent except ``claim_next`` (a lost reply leaves those requests ``running`` unseen --
    :meth:`reset_running` recovers them) and a dead letter that may be recorded twice.

    Args:
        url: ``redis://[:password@]host:port/db`` or ``rediss://`` (TLS) or ``unix://``.
        prefix: key prefix (default ``talkfarm:``); tests use it for isolation.
        reconnect_timeout_s: how long to keep retrying through an outage.
        socket_timeout_s: per-command socket timeout.
    """

    def __init__(self, url: str, *, prefix: str = "talkfarm:", reconnect_timeout_s: float = 30.0,
                 socket_timeout_s: float = 10.0, backoff_s: float = 0.05):
        self.url = url
        self.prefix = prefix
        self.reconnect_timeout_s = reconnect_timeout_s
        self.socket_timeout_s = socket_timeout_s
        self.backoff_s = backoff_s
        self._client = None
        self._scripts: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        safe = re.sub(r"//[^@/]*@", "//***@", self.url)
        return f"RedisJobStore({safe!r}, prefix={self.prefix!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_scripts", "_lock")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client, self._scripts, self._lock = None, {}, threading.Lock()

    @property
    def redis(self):
        """The redis-py client (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import redis
                    from redis.backoff import NoBackoff
                    from redis.retry import Retry

                    client = redis.Redis.from_url(
                        self.url, decode_responses=True, socket_timeout=self.socket_timeout_s,
                        socket_connect_timeout=min(self.socket_timeout_s, 5.0), health_check_interval=15,
                        retry=Retry(NoBackoff(), 0))  # retries are ours (_call), with a deadline
                    self._scripts = {name: client.register_script(src) for name, src in (
                        ("create", _CREATE), ("claim", _CLAIM), ("done", _DONE), ("failed", _FAILED),
                        ("requeue", _REQUEUE), ("cancel", _CANCEL), ("reset", _RESET),
                        ("lease", _LEASE), ("renew", _RENEW), ("release", _RELEASE))}
                    self._client = client
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, fn: Callable[[], T], job_id: str | None = None) -> T:
        import redis

        deadline = time.monotonic() + self.reconnect_timeout_s
        delay = self.backoff_s
        while True:
            try:
                return fn()
            except (redis.AuthenticationError, redis.exceptions.AuthorizationError):
                raise  # wrong password / ACL: retrying will not help
            except (redis.ConnectionError, redis.TimeoutError) as exc:  # BusyLoadingError included
                if time.monotonic() + delay > deadline:
                    raise TransientError(f"job store {self!r} unreachable for {self.reconnect_timeout_s:.0f} s: "
                                         f"{exc}") from exc
                if self._client is not None:
                    self._client.connection_pool.disconnect()
                time.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, 2.0)
            except redis.ResponseError as exc:
                if "NOJOB" in str(exc) and job_id is not None:
                    raise JobNotFoundError(job_id) from None
                if "NOREQ" in str(exc):
                    raise KeyError(f"job {job_id!r} has no such request") from None
                raise

    # -- keys

    def _k(self, job_id: str, part: str = "") -> str:
        return f"{self.prefix}job:{{{job_id}}}{part}"

    def _run(self, name: str, job_id: str, parts: tuple[str, ...], args: list[Any]) -> Any:
        keys = [self._k(job_id, p) for p in parts]
        return self._call(lambda: self._scripts_loaded()[name](keys=keys, args=args), job_id)

    def _scripts_loaded(self) -> dict[str, Any]:
        _ = self.redis
        return self._scripts

    # -- jobs

    def create_job(self, job_id, requests, meta=None) -> int:
        _check_job_id(job_id)
        specs = _specs(requests)
        meta_json = json.dumps(meta or {})
        added = 0
        now = repr(time.time())
        # Batches keep each script short (Redis is single-threaded); each batch is atomic and the
        # whole call idempotent, so a retry after a failure mid-way is safe.
        for start in range(0, max(len(specs), 1), 1000):
            args: list[Any] = [now, meta_json, self._k(job_id, ":req:")]
            for spec in specs[start:start + 1000]:
                args += [spec.request_id, spec.render_id or "", spec.priority]
            added += self._run("create", job_id, ("", ":pending", ":ids"), args)
        self._call(lambda: self.redis.zadd(f"{self.prefix}jobs", {job_id: float(now)}, nx=True))
        return added

    def list_jobs(self) -> list[str]:
        return self._call(lambda: self.redis.zrevrange(f"{self.prefix}jobs", 0, -1))

    def delete_job(self, job_id) -> None:
        self.job_status(job_id)
        ids = self._call(lambda: self.redis.lrange(self._k(job_id, ":ids"), 0, -1))
        keys = [self._k(job_id, f":req:{rid}") for rid in ids]
        keys += [self._k(job_id, p) for p in ("", ":pending", ":ids", ":dead", ":lease")]
        for start in range(0, len(keys), 1000):
            self._call(lambda: self.redis.delete(*keys[start:start + 1000]))
        self._call(lambda: self.redis.zrem(f"{self.prefix}jobs", job_id))

    def job_status(self, job_id) -> JobStatus:
        job = self._call(lambda: self.redis.hgetall(self._k(job_id)))
        if not job:
            raise JobNotFoundError(job_id)
        return JobStatus(job_id=job_id, counts={s: int(job.get(f"c:{s}", 0)) for s in STATUSES},
                         cancelled=job.get("cancelled") == "1", created_at=_utc(job["created_at"]),
                         updated_at=_utc(job["updated_at"]), meta=json.loads(job.get("meta") or "{}"))

    def request_states(self, job_id) -> list[RequestState]:
        self.job_status(job_id)
        ids = self._call(lambda: self.redis.lrange(self._k(job_id, ":ids"), 0, -1))
        states: list[RequestState] = []
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]

            def _fetch() -> list[dict[str, str]]:
                pipe = self.redis.pipeline(transaction=False)
                for rid in chunk:
                    pipe.hgetall(self._k(job_id, f":req:{rid}"))
                return pipe.execute()

            for rid, h in zip(chunk, self._call(_fetch)):
                states.append(RequestState(
                    request_id=rid, render_id=h.get("render_id") or None, status=h.get("status", "pending"),
                    priority=int(h.get("priority", 0)), attempts=int(h.get("attempts", 0)),
                    error_stage=h.get("error_stage") or None, error_message=h.get("error_message") or None,
                    result=json.loads(h["result"]) if h.get("result") else None, updated_at=_utc(h.get("updated_at")),
                    history=[_history_entry(e.get("status"), e.get("attempts"), e.get("stage"), e.get("message"),
                                            e.get("at")) for e in json.loads(h.get("history") or "[]")]))
        return states

    def dead_letters(self, job_id) -> list[DeadLetter]:
        self.job_status(job_id)
        out = []
        for raw in self._call(lambda: self.redis.lrange(self._k(job_id, ":dead"), 0, -1)):
            d = json.loads(raw)
            out.append(DeadLetter(d["request_id"], d.get("render_id") or None, d["stage"], d["message"],
                                  int(d["attempts"]), _utc(d["at"])))
        return out

    # -- work loop

    def claim_next(self, job_id, limit=1) -> list[str]:
        if limit <= 0:
            return []
        return list(self._run("claim", job_id, ("", ":pending"), [repr(time.time()), self._k(job_id, ":req:"), limit]))

    def mark_done(self, job_id, request_id, result=None) -> None:
        self._run("done", job_id, ("", ":pending"),
                  [repr(time.time()), self._k(job_id, ":req:"), request_id, json.dumps(result or {})])

    def mark_failed(self, job_id, request_id, stage, message, *, transient=False, max_attempts=3) -> RequestStatus:
        return self._run("failed", job_id, ("", ":pending", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), request_id, stage, message,
                          "1" if transient else "0", max_attempts])

    def set_render_id(self, job_id, request_id, render_id) -> None:
        key = self._k(job_id, f":req:{request_id}")
        if not self._call(lambda: self.redis.exists(key)):
            self.job_status(job_id)
            raise KeyError(f"job {job_id!r} has no request {request_id!r}")
        self._call(lambda: self.redis.hset(key, "render_id", render_id))

    def requeue_failed(self, job_id, *, include_cancelled=True) -> int:
        return self._run("requeue", job_id, ("", ":pending", ":ids", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), "1" if include_cancelled else "0"])

    def cancel(self, job_id) -> int:
        return self._run("cancel", job_id, ("", ":pending"), [repr(time.time()), self._k(job_id, ":req:")])

    def is_cancelled(self, job_id) -> bool:
        flag = self._call(lambda: self.redis.hget(self._k(job_id), "cancelled"))
        if flag is None:
            raise JobNotFoundError(job_id)
        return flag == "1"

    def reset_running(self, job_id, *, max_attempts=None) -> int:
        return self._run("reset", job_id, ("", ":pending", ":ids", ":dead"),
                         [repr(time.time()), self._k(job_id, ":req:"), max_attempts or 0])

    # -- lease

    def acquire_lease(self, job_id, holder, ttl_s) -> tuple[str, float]:
        _check_job_id(job_id)
        current, left_ms = self._run("lease", job_id, (":lease",), [holder, int(ttl_s * 1000)])
        return current, int(left_ms) / 1000.0

    def renew_lease(self, job_id, holder, ttl_s) -> bool:
        return self._run("renew", job_id, (":lease",), [holder, int(ttl_s * 1000)]) == 1

    def release_lease(self, job_id, holder) -> None:
        self._run("release", job_id, (":lease",), [holder])

    # -- idempotency

    def lookup_render(self, render_id) -> dict[str, Any] | None:
        raw = self._call(lambda: self.redis.get(f"{self.prefix}render:{render_id}"))
        return None if raw is None else json.loads(raw)

    def record_render(self, render_id, result) -> None:
        payload = json.dumps(result)
        self._call(lambda: self.redis.set(f"{self.prefix}render:{render_id}", payload))


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
