"""SQLite job store: the embedded default (one file, no server)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.errors import TransientError
from pipeline.jobstate.store import (
    DEFAULT_SQLITE_PATH,
    STATUSES,
    ClaimedRequest,
    DeadLetter,
    Finished,
    JobNotFoundError,
    JobStatus,
    JobStore,
    RequestState,
    RequestStatus,
    check_job_id,
    history_entry,
    request_specs,
    to_utc,
)

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
CREATE INDEX IF NOT EXISTS requests_by_seq ON requests (job_id, seq);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, request_id TEXT NOT NULL, render_id TEXT,
    stage TEXT NOT NULL, message TEXT NOT NULL, attempts INTEGER NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_by_job ON dead_letters (job_id, id);
CREATE TABLE IF NOT EXISTS renders (render_id TEXT PRIMARY KEY, result TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (uri TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, sha256 TEXT NOT NULL,
    at REAL NOT NULL);
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
                columns = {row["name"] for row in db.execute("PRAGMA table_info(requests)")}
                for column in ("history", "request"):      # a store from before these columns
                    if column not in columns:
                        db.execute(f"ALTER TABLE requests ADD COLUMN {column} TEXT")
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
        check_job_id(job_id)
        specs = request_specs(requests)
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
                    "INSERT OR IGNORE INTO requests (job_id, request_id, render_id, priority, seq, status, updated_at,"
                    " request) VALUES (?,?,?,?,?,?,?,?)",
                    (job_id, spec.request_id, spec.render_id, spec.priority, seq + 1, status, now, spec.request))
                if cur.rowcount:
                    seq += 1
                    added += 1
                elif spec.request is not None:
                    db.execute("UPDATE requests SET request=? WHERE job_id=? AND request_id=?",
                               (spec.request, job_id, spec.request_id))
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
                         created_at=to_utc(job["created_at"]), updated_at=to_utc(job["updated_at"]),
                         meta=json.loads(job["meta"]))

    def iter_request_states(self, job_id, page_size=1000) -> Iterator[RequestState]:
        after = -1
        while True:
            with self._tx() as db:
                self._job_row(db, job_id)
                rows = db.execute("SELECT * FROM requests WHERE job_id=? AND seq>? ORDER BY seq LIMIT ?",
                                  (job_id, after, page_size)).fetchall()
            for r in rows:
                yield RequestState(request_id=r["request_id"], render_id=r["render_id"], status=r["status"],
                                   priority=r["priority"], attempts=r["attempts"], error_stage=r["error_stage"],
                                   error_message=r["error_message"],
                                   result=None if r["result"] is None else json.loads(r["result"]),
                                   updated_at=to_utc(r["updated_at"]), history=json.loads(r["history"] or "[]"),
                                   request=r["request"])
            if len(rows) < page_size:
                return
            after = rows[-1]["seq"]

    def dead_letters(self, job_id) -> list[DeadLetter]:
        with self._tx() as db:
            self._job_row(db, job_id)
            rows = db.execute("SELECT * FROM dead_letters WHERE job_id=? ORDER BY id", (job_id,)).fetchall()
        return [DeadLetter(r["request_id"], r["render_id"], r["stage"], r["message"], r["attempts"], to_utc(r["at"]))
                for r in rows]

    # -- work loop

    def claim(self, job_id, limit=1) -> list[ClaimedRequest]:
        if limit <= 0:
            return []
        now = time.time()
        with self._tx() as db:
            if self._job_row(db, job_id)["cancelled"]:
                return []
            claimed = [ClaimedRequest(r["request_id"], r["attempts"] + 1, r["request"]) for r in db.execute(
                "SELECT request_id, attempts, request FROM requests WHERE job_id=? AND status='pending'"
                " ORDER BY priority DESC, seq LIMIT ?", (job_id, limit))]
            db.executemany("UPDATE requests SET status='running', attempts=attempts+1, updated_at=?"
                           " WHERE job_id=? AND request_id=?", [(now, job_id, c.request_id) for c in claimed])
            if claimed:
                self._touch(db, job_id, now)
        return claimed

    def _request(self, db, job_id, request_id) -> sqlite3.Row:
        row = db.execute("SELECT * FROM requests WHERE job_id=? AND request_id=?", (job_id, request_id)).fetchone()
        if row is None:
            raise KeyError(f"job {job_id!r} has no request {request_id!r}")
        return row

    def finish(self, job_id, finished: Sequence[Finished]) -> None:
        if not finished:
            return
        now = time.time()
        with self._tx() as db:
            self._job_row(db, job_id)
            for item in finished:
                cur = db.execute(
                    "UPDATE requests SET status='done', result=?, render_id=COALESCE(?, render_id), error_stage=NULL,"
                    " error_message=NULL, updated_at=? WHERE job_id=? AND request_id=?",
                    (json.dumps(item.result), item.render_id, now, job_id, item.request_id))
                if cur.rowcount == 0:
                    raise KeyError(f"job {job_id!r} has no request {item.request_id!r}")
            db.executemany("INSERT OR REPLACE INTO renders (render_id, result, at) VALUES (?,?,?)",
                           [(item.render_id, json.dumps(item.result), now) for item in finished if item.new_render])
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
                history = [*json.loads(r["history"] or "[]"), history_entry(r["status"], r["attempts"],
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

    # -- input hashes

    def lookup_input(self, uri) -> tuple[str, str] | None:
        rows = self._read("SELECT fingerprint, sha256 FROM inputs WHERE uri=?", (uri,))
        return (rows[0]["fingerprint"], rows[0]["sha256"]) if rows else None

    def record_input(self, uri, fingerprint, sha256) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO inputs (uri, fingerprint, sha256, at) VALUES (?,?,?,?)",
                       (uri, fingerprint, sha256, time.time()))
